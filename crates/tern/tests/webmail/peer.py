# The real peers of the webmail tests: Python's smtplib puts mail into Tern and its
# imaplib looks at the result, as a desktop client would. The browser scripts (lib.mjs)
# run it as `python3 peer.py COMMAND` with a JSON request on stdin; it prints one JSON
# answer. Byte strings travel as base64.
#
# Commands:
#   deliver   {port, messages: [{from, to: [...], raw_b64}]}  -> {sent}
#             SMTP to the MX port, as another mail server would.
#   submit    {port, user, password, messages: [...]}          -> {sent}
#             SMTP submission with STARTTLS and a login, as a mail client would.
#   login     {port, user, password}                            -> {ok, error}
#   folders   {port, user, password}                            -> {folders: [names]}
#   store     {port, user, password, folder, subject, op, flags} -> {uids}
#             STORE op ("+FLAGS", "-FLAGS") flags on the messages with that subject.
#   folder    {port, user, password, folder, raw}              -> {messages: [...]}
#             every message of a folder: uid, flags, subject, message_id, in_reply_to,
#             from, attachments [{name, content_type, data_b64}], text (the first text
#             part), and with raw=true the exact bytes (raw_b64).

import base64
import email
import email.policy
import imaplib
import json
import re
import smtplib
import ssl
import sys


def unverified():
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def imap(request):
    connection = imaplib.IMAP4("127.0.0.1", request["port"])
    connection.starttls(ssl_context=unverified())
    connection.login(request["user"], request["password"])
    return connection


def quoted(name):
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def deliver(request):
    smtp = smtplib.SMTP("127.0.0.1", request["port"], timeout=60)
    for m in request["messages"]:
        smtp.sendmail(m["from"], m["to"], base64.b64decode(m["raw_b64"]))
    smtp.quit()
    return {"sent": len(request["messages"])}


def submit(request):
    smtp = smtplib.SMTP("127.0.0.1", request["port"], timeout=60)
    smtp.starttls(context=unverified())
    smtp.login(request["user"], request["password"])
    for m in request["messages"]:
        smtp.sendmail(m["from"], m["to"], base64.b64decode(m["raw_b64"]))
    smtp.quit()
    return {"sent": len(request["messages"])}


def login(request):
    try:
        connection = imap(request)
    except imaplib.IMAP4.error as e:
        return {"ok": False, "error": str(e)}
    connection.logout()
    return {"ok": True, "error": None}


def folders(request):
    connection = imap(request)
    status, lines = connection.list()
    assert status == "OK", lines
    names = []
    for line in lines:
        text = line.decode() if isinstance(line, bytes) else line[0].decode()
        match = re.match(r'\((?P<attrs>[^)]*)\) (?P<sep>"[^"]*"|NIL) (?P<name>.*)$', text)
        name = match.group("name")
        if name.startswith('"'):
            name = name[1:-1].replace('\\"', '"').replace("\\\\", "\\")
        names.append(name)
    connection.logout()
    return {"folders": sorted(names)}


def store(request):
    connection = imap(request)
    status, data = connection.select(quoted(request["folder"]))
    assert status == "OK", data
    connection.literal = request["subject"].encode()
    status, data = connection.uid("SEARCH", "CHARSET", "UTF-8", "SUBJECT")
    assert status == "OK", data
    uids = [int(u) for u in data[0].split()]
    if uids:
        status, data = connection.uid(
            "STORE", ",".join(map(str, uids)), request["op"], "(" + " ".join(request["flags"]) + ")"
        )
        assert status == "OK", data
    connection.logout()
    return {"uids": uids}


def first_text(message):
    for part in message.walk():
        if part.get_content_maintype() == "multipart" or part.get_content_disposition() == "attachment":
            continue
        if part.get_content_type() in ("text/plain", "text/html"):
            try:
                return part.get_content()
            except Exception:
                return part.get_payload(decode=True).decode("utf-8", "replace")
    return ""


def attachments(message):
    out = []
    for part in message.iter_attachments():
        if part.get_content_type() == "message/rfc822":
            data = part.get_payload(0).as_bytes()
        else:
            data = part.get_payload(decode=True) or b""
        out.append(
            {
                "name": part.get_filename(),
                "content_type": part.get_content_type(),
                "data_b64": base64.b64encode(data).decode(),
            }
        )
    return out


def folder(request):
    connection = imap(request)
    status, data = connection.select(quoted(request["folder"]), readonly=True)
    assert status == "OK", data
    status, data = connection.uid("SEARCH", None, "ALL")
    uids = [int(u) for u in data[0].split()]
    messages = []
    for uid in uids:
        status, data = connection.uid("FETCH", str(uid), "(FLAGS BODY.PEEK[])")
        assert status == "OK", data
        head, raw = data[0]
        flags = re.search(rb"FLAGS \(([^)]*)\)", head).group(1).decode().split()
        message = email.message_from_bytes(raw, policy=email.policy.default)
        entry = {
            "uid": uid,
            "flags": flags,
            "subject": str(message.get("subject", "")),
            "message_id": str(message.get("message-id", "")).strip(),
            "in_reply_to": str(message.get("in-reply-to", "")).strip(),
            "references": str(message.get("references", "")).strip(),
            "from": str(message.get("from", "")),
            "to": str(message.get("to", "")),
            "attachments": attachments(message),
            "text": first_text(message),
        }
        if request.get("raw"):
            entry["raw_b64"] = base64.b64encode(raw).decode()
        messages.append(entry)
    connection.logout()
    return {"messages": messages}


COMMANDS = {
    "deliver": deliver,
    "submit": submit,
    "login": login,
    "folders": folders,
    "folder": folder,
    "store": store,
}

if __name__ == "__main__":
    answer = COMMANDS[sys.argv[1]](json.load(sys.stdin))
    json.dump(answer, sys.stdout)
