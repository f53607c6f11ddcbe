//! COMPRESS DEFLATE (RFC 4978): after the tagged OK both sides speak raw DEFLATE.

use crate::response::Status;
use crate::session::{Reply, Result, Session};

pub async fn compress(s: &mut Session, tag: &str) -> Result {
    if s.conn.as_ref().is_some_and(|c| c.is_compressed()) {
        // RFC 4978 §3.
        return Err(Reply::no("Compression is already active").code("COMPRESSIONACTIVE"));
    }
    s.out.tagged(tag, Status::Ok, "DEFLATE active");
    s.flush().await.map_err(|_| Reply::already_sent())?;
    // What the client sent after COMPRESS is already compressed.
    let pending = s.framer.take_buffered();
    if let Some(stream) = s.conn.as_mut() {
        stream.start_deflate(pending);
    }
    Err(Reply::already_sent())
}
