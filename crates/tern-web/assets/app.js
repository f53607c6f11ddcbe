// Tern webmail's page script. Every page works without it; it adds live updates
// (server-sent events), keyboard shortcuts, drag and drop to folders, the rich-text
// editor and automatic draft saving. Requests it makes carry the session's CSRF token.
"use strict";

(function () {
  const csrf = document.querySelector('meta[name="csrf"]')?.content || "";
  const $ = (sel, root = document) => root.querySelector(sel);
  const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

  function toast(text) {
    const t = $("#toast");
    if (!t) return;
    t.textContent = text;
    t.hidden = false;
    clearTimeout(toast.timer);
    toast.timer = setTimeout(() => (t.hidden = true), 3500);
  }

  async function post(url, body) {
    const response = await fetch(url, {
      method: "POST",
      body,
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
      credentials: "same-origin",
    });
    if (!response.ok) throw new Error((await response.text()) || response.statusText);
    return response.json();
  }

  // --- Confirmations, menus ---------------------------------------------------------
  document.addEventListener("click", (e) => {
    const confirmer = e.target.closest("[data-confirm]");
    if (confirmer && !window.confirm(confirmer.dataset.confirm)) e.preventDefault();
    if (e.target.closest(".menu-toggle")) document.body.classList.toggle("folders-open");
    else if (!e.target.closest(".folders")) document.body.classList.remove("folders-open");
    if (e.target.closest('[data-action="shortcuts"]')) {
      e.preventDefault();
      $("#shortcuts")?.showModal();
    }
  });
  const sort = $("select[data-sort]");
  if (sort) sort.addEventListener("change", () => (location.href = sort.value));

  // --- The message list ---------------------------------------------------------------
  function rows() {
    return $$("#message-list tr.msg");
  }
  function bindList() {
    const all = $("#select-all");
    if (all) {
      all.checked = false;
      all.onchange = () => rows().forEach((r) => {
        const box = $('input[name="uid"]', r);
        box.checked = all.checked;
        r.classList.toggle("selected", all.checked);
      });
    }
    rows().forEach((row) => {
      row.addEventListener("click", (e) => {
        if (e.target.closest("input, a, button, label")) {
          if (e.target.matches('input[name="uid"]')) row.classList.toggle("selected", e.target.checked);
          return;
        }
        location.href = row.dataset.href;
      });
      row.addEventListener("dragstart", (e) => {
        const box = $('input[name="uid"]', row);
        if (!box.checked) {
          rows().forEach((r) => { $('input[name="uid"]', r).checked = false; r.classList.remove("selected"); });
          box.checked = true;
          row.classList.add("selected");
        }
        const uids = rows().filter((r) => $('input[name="uid"]', r).checked).map((r) => r.dataset.uid);
        e.dataTransfer.setData("application/x-tern-uids", uids.join(","));
        e.dataTransfer.effectAllowed = "move";
        row.classList.add("dragging");
      });
      row.addEventListener("dragend", () => row.classList.remove("dragging"));
    });
  }
  bindList();

  function currentFolder() {
    return $("#list-view")?.dataset.folder || $("#read-view")?.dataset.folder || "";
  }

  // `leaving`: the page goes elsewhere next, so it is not fetched again, by this or by a
  // live update (a message just moved away would answer 404).
  let departing = false;
  async function act(action, uids, target, leaving) {
    const body = new URLSearchParams();
    body.set("folder", currentFolder());
    body.set("action", action);
    if (target) body.set("target", target);
    uids.forEach((u) => body.append("uid", u));
    if (leaving) departing = true;
    let result;
    try {
      result = await post("/mail/action", body);
    } catch (err) {
      departing = false;
      throw err;
    }
    toast(result.message);
    if (!leaving) refresh(true);
  }

  // Folders take dropped messages.
  function bindFolders() {
    $$("#folder-tree li[data-folder]").forEach((li) => {
      li.addEventListener("dragover", (e) => {
        if (e.dataTransfer.types.includes("application/x-tern-uids") && li.dataset.folder !== currentFolder()) {
          e.preventDefault();
          li.classList.add("drop-target");
        }
      });
      li.addEventListener("dragleave", () => li.classList.remove("drop-target"));
      li.addEventListener("drop", (e) => {
        e.preventDefault();
        li.classList.remove("drop-target");
        const uids = e.dataTransfer.getData("application/x-tern-uids").split(",").filter(Boolean);
        if (uids.length) act("move", uids, li.dataset.folder).catch((err) => toast(err.message));
      });
    });
  }
  bindFolders();

  // --- Live updates -------------------------------------------------------------------
  // The page's own HTML is fetched again and the folder tree and list swapped in, so
  // what the script shows is exactly what a reload would.
  let refreshing = null;
  async function refresh(listToo) {
    if (departing) return;
    if (refreshing) return refreshing;
    refreshing = (async () => {
      try {
        const response = await fetch(location.href, { headers: { Accept: "text/html" }, credentials: "same-origin" });
        if (!response.ok) return;
        const doc = new DOMParser().parseFromString(await response.text(), "text/html");
        const tree = $("#folder-tree", doc);
        if (tree) {
          $("#folder-tree").replaceWith(tree);
          bindFolders();
        }
        const banner = $(".banner.migration");
        const newBanner = $(".banner.migration", doc);
        if (banner && !newBanner) banner.remove();
        else if (banner && newBanner) banner.textContent = newBanner.textContent;
        if (listToo && $("#list-view")) {
          const checked = new Set($$('#message-list input[name="uid"]:checked').map((b) => b.value));
          const fresh = $("#list-view", doc);
          if (fresh) {
            $("#list-view").replaceWith(fresh);
            $$('#message-list input[name="uid"]').forEach((b) => {
              if (checked.has(b.value)) { b.checked = true; b.closest("tr").classList.add("selected"); }
            });
            bindList();
            const s = $("select[data-sort]");
            if (s) s.addEventListener("change", () => (location.href = s.value));
          }
        }
      } finally {
        refreshing = null;
      }
    })();
    return refreshing;
  }

  if (window.EventSource && $("#folder-tree")) {
    let timer = null;
    let listChanged = false;
    const events = new EventSource("/events");
    events.addEventListener("change", (e) => {
      let data = {};
      try { data = JSON.parse(e.data); } catch (_) { return; }
      const shown = Number($("#list-view")?.dataset.mailboxId || -1);
      if (data.mailbox === 0 || data.mailbox === shown) listChanged = true;
      if (data.kind === "appended" && data.mailbox === shown) toast(data.count === 1 ? "New message" : `${data.count} new messages`);
      clearTimeout(timer);
      timer = setTimeout(() => { refresh(listChanged); listChanged = false; }, 250);
    });
  }

  // --- Keyboard shortcuts -------------------------------------------------------------
  let cursor = -1;
  function moveCursor(step) {
    const list = rows();
    if (!list.length) return;
    list[cursor]?.classList.remove("cursor");
    cursor = Math.max(0, Math.min(list.length - 1, cursor + step));
    list[cursor].classList.add("cursor");
    list[cursor].scrollIntoView({ block: "nearest" });
  }
  function selectedUids() {
    const list = rows();
    const checked = list.filter((r) => $('input[name="uid"]', r).checked);
    if (checked.length) return checked.map((r) => r.dataset.uid);
    if (list[cursor]) return [list[cursor].dataset.uid];
    const reading = $("#read-view");
    return reading ? [reading.dataset.uid] : [];
  }
  function archiveFolder() {
    return $("#folder-tree li.archive")?.dataset.folder;
  }
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey) return;
    if (e.target.closest("input, textarea, select, [contenteditable=true]")) {
      if (e.key === "Escape") e.target.blur();
      return;
    }
    const click = (sel) => { const el = $(sel); if (el) { e.preventDefault(); el.click(); } };
    switch (e.key) {
      case "j": e.preventDefault(); moveCursor(1); break;
      case "k": e.preventDefault(); moveCursor(-1); break;
      case "o": case "Enter": {
        const row = rows()[cursor];
        if (row) { e.preventDefault(); location.href = row.dataset.href; }
        break;
      }
      case "x": {
        const row = rows()[cursor];
        if (row) { const b = $('input[name="uid"]', row); b.checked = !b.checked; row.classList.toggle("selected", b.checked); }
        break;
      }
      case "r": click("#reply"); break;
      case "a": click("#reply-all"); break;
      case "f": click("#forward"); break;
      case "c": e.preventDefault(); location.href = "/compose"; break;
      case "/": e.preventDefault(); $("#search-box")?.focus(); break;
      case "u": click('[data-key="u"]'); break;
      case "?": e.preventDefault(); $("#shortcuts")?.showModal(); break;
      case "#": case "e": case "s": {
        const uids = selectedUids();
        if (!uids.length) break;
        e.preventDefault();
        const action = e.key === "#" ? ["delete"] : e.key === "s" ? ["flag"] : ["move", archiveFolder()];
        if (action[0] === "move" && !action[1]) { toast("There is no Archive folder."); break; }
        const leaving = Boolean($("#read-view")) && e.key !== "s";
        act(action[0], uids, action[1], leaving).then(() => {
          if (leaving) click('[data-key="u"]');
        }).catch((err) => toast(err.message));
        break;
      }
    }
  });

  // --- Compose: rich text and drafts --------------------------------------------------
  const form = $("#compose-form");
  if (form) {
    const bar = $(".editor-bar", form);
    const text = $("#text", form);
    const rich = $("#rich", form);
    const mode = $("#editor-mode", form);
    bar.hidden = false;
    const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
    mode.addEventListener("change", () => {
      if (mode.value === "rich") {
        rich.innerHTML = escape(text.value).replace(/\n/g, "<br>");
        text.hidden = true; rich.hidden = false; rich.focus();
      } else {
        text.value = rich.innerText;
        rich.hidden = true; text.hidden = false; text.focus();
      }
      $$("[data-format]", bar).forEach((b) => (b.disabled = mode.value !== "rich"));
    });
    $$("[data-format]", bar).forEach((b) => {
      b.disabled = true;
      b.addEventListener("click", () => {
        rich.focus();
        let value = b.dataset.value || null;
        if (b.dataset.format === "createLink") {
          value = window.prompt("Link address (https://…)");
          if (!value || !/^(https?:|mailto:)/i.test(value)) return;
        }
        document.execCommand(b.dataset.format, false, value);
      });
    });
    function sync() {
      if (mode.value === "rich") {
        form.elements.html.value = rich.innerHTML;
        form.elements.text.value = rich.innerText;
      } else {
        form.elements.html.value = "";
      }
    }
    form.addEventListener("submit", (e) => {
      sync();
      if (e.submitter && e.submitter.id === "save-draft") {
        e.preventDefault();
        saveDraft(true);
      }
    });
    let dirty = false;
    let saving = false;
    const status = $("#draft-status");
    async function saveDraft(now) {
      if (saving || (!dirty && !now)) return;
      saving = true;
      dirty = false;
      sync();
      try {
        const result = await post("/compose/draft", new FormData(form));
        form.elements.draft_uid.value = result.draft_uid;
        form.elements.source_folder.value = result.source_folder;
        form.elements.source_uid.value = result.source_uid;
        form.elements.attach_message.value = "";
        const kept = $("#kept");
        kept.textContent = "";
        result.attachments.forEach((a) => {
          const li = document.createElement("li");
          const label = document.createElement("label");
          const box = document.createElement("input");
          box.type = "checkbox"; box.name = "keep_part"; box.value = a.part; box.checked = true;
          const size = document.createElement("span");
          size.className = "muted"; size.textContent = a.size;
          label.append(box, " " + a.name + " ", size);
          li.append(label);
          kept.append(li);
        });
        $("#files").value = "";
        status.textContent = "Draft saved " + new Date().toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" });
      } catch (err) {
        status.textContent = "Draft not saved: " + err.message;
        dirty = true;
      } finally {
        saving = false;
      }
    }
    let idle = null;
    const changed = () => {
      dirty = true;
      clearTimeout(idle);
      idle = setTimeout(() => saveDraft(false), 4000);
    };
    form.addEventListener("input", changed);
    rich.addEventListener("input", changed);
    $("#files").addEventListener("change", changed);
    setInterval(() => saveDraft(false), 30000);
  }
})();
