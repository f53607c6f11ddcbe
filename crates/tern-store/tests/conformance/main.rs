//! The store conformance suite: behaviour every `Store` backend must show. Each test
//! below runs against every backend listed in `backends!` (today the embedded one; the
//! PostgreSQL backend adds itself here).

mod accounts;
mod concurrency;
mod listing;
mod mailboxes;
mod messages;
mod migration;
mod outbound;

use std::sync::Arc;

use tempfile::TempDir;
use tern_store::{AccountId, EmbeddedStore, NewAccount, Store};

/// A store under test and what keeps it alive.
pub struct Fixture {
    pub store: Arc<dyn Store>,
    _dir: TempDir,
}

pub fn embedded() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = EmbeddedStore::open(&dir.path().join("store")).expect("open store");
    Fixture {
        store: Arc::new(store),
        _dir: dir,
    }
}

/// A store with domain example.test and account alice@example.test.
pub async fn with_alice(f: &Fixture) -> AccountId {
    f.store.create_domain("example.test").await.unwrap();
    f.store
        .create_account(NewAccount {
            address: "alice@example.test".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .id
}

/// Generates one `#[tokio::test]` per (backend, test function).
macro_rules! backends {
    ($($module:ident :: $test:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $test() {
                    super::$module::$test(super::embedded()).await;
                }
            )*
        }
    };
}

backends!(
    accounts::domains_lifecycle,
    accounts::accounts_lifecycle,
    accounts::recipients_resolve,
    accounts::aliases_lifecycle,
    mailboxes::new_account_has_special_folders,
    mailboxes::create_makes_parents,
    mailboxes::rename_moves_children,
    mailboxes::rename_inbox_moves_messages,
    mailboxes::delete_rules,
    mailboxes::recreated_mailbox_has_new_uidvalidity,
    mailboxes::subscriptions,
    listing::pages_are_sorted_and_counted,
    listing::search_results_page,
    listing::conversations_group_by_base_subject,
    listing::one_conversation_is_listed,
    listing::copied_and_moved_messages_keep_their_order,
    messages::append_is_byte_exact,
    messages::pop3_uidls_from_a_migration_are_kept_until_expunge,
    messages::append_keeps_flags_and_dates,
    messages::multiappend_is_atomic,
    messages::uids_and_modseqs_increase,
    messages::flags_operations,
    messages::unchangedsince_reports_modified,
    messages::copy_and_move,
    messages::failed_move_changes_nothing,
    messages::expunge_variants,
    messages::changes_since_reports_vanished,
    messages::metadata_is_stored,
    messages::broken_mime_is_stored,
    messages::full_text_search,
    messages::content_hashes_identify_messages,
    messages::quota_is_enforced,
    messages::delete_account_removes_mail,
    migration::sources_and_migrations_lifecycle,
    migration::migrated_messages_are_mapped_atomically,
    migration::settings_round_trip,
    migration::a_request_is_replaced_only_if_unchanged,
    migration::settings_are_replaced_only_if_unchanged,
    migration::concurrent_setting_updates_lose_nothing,
    outbound::deliver_to_many_stores_once_and_skips_a_full_mailbox,
    outbound::queue_lifecycle_and_leases,
    outbound::dkim_keys_and_receiving,
    concurrency::change_bus_announces_within_100ms,
    concurrency::two_writers_and_a_reader,
);
