//! Leases: how a worker (a migration pass, a queue delivery) claims a record so that
//! no other process works on it at the same time. A lease names its holder `host:pid`
//! and holds until a time; a holder on this machine whose process is gone (kill -9)
//! gives its leases up at once instead of when they run out.

/// This process's name in leases: `host:pid`.
pub fn owner_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "localhost".into());
    format!("{host}:{}", std::process::id())
}

/// A lease holder on this machine whose process is gone.
pub fn is_dead_local_owner(owner: &str, me: &str) -> bool {
    let (Some((host, pid)), Some((my_host, _))) = (owner.rsplit_once(':'), me.rsplit_once(':')) else {
        return false;
    };
    host == my_host
        && pid
            .parse::<u32>()
            .is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists())
}
