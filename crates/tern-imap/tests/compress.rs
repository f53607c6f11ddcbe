//! COMPRESS=DEFLATE (RFC 4978): a session that switches to raw DEFLATE in both
//! directions keeps working, including a large FETCH.

mod common;

use std::time::Duration;

use common::{PASSWORD, Server, USER};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

#[tokio::test(flavor = "multi_thread")]
async fn a_compressed_session_selects_and_fetches() {
    let server = Server::start().await;
    let big: Vec<u8> = b"Subject: big\r\n\r\n"
        .iter()
        .copied()
        .chain((0..200_000).map(|i| b'a' + (i % 26) as u8))
        .collect();
    server.deliver(vec![big.clone()]).await;
    let stream = tokio::net::TcpStream::connect(server.addr).await.expect("connect");
    let mut stream = BufReader::new(stream);
    let mut line = String::new();
    stream.read_line(&mut line).await.expect("greeting");
    stream
        .get_mut()
        .write_all(format!("a LOGIN {USER} \"{PASSWORD}\"\r\nb COMPRESS DEFLATE\r\n").as_bytes())
        .await
        .expect("write");
    let mut said = String::new();
    while !said.contains("b OK") {
        let mut l = String::new();
        stream.read_line(&mut l).await.expect("read");
        assert!(!l.is_empty(), "connection closed: {said}");
        said.push_str(&l);
    }
    assert!(said.contains("COMPRESS=DEFLATE"), "advertised after login: {said}");

    let mut deflate = Compress::new(Compression::default(), false);
    let mut inflate = Decompress::new(false);
    let mut compressed = Vec::with_capacity(4096);
    deflate
        .compress_vec(
            b"c SELECT INBOX\r\nd UID FETCH 1 BODY.PEEK[]\r\ne LOGOUT\r\n",
            &mut compressed,
            FlushCompress::Sync,
        )
        .expect("compress");
    stream.get_mut().write_all(&compressed).await.expect("send");

    let mut plain = Vec::new();
    let mut chunk = vec![0u8; 65536];
    let mut out = vec![0u8; 1 << 20];
    while !String::from_utf8_lossy(&plain).contains("e OK") {
        let n = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut chunk))
            .await
            .expect("in time")
            .expect("read");
        assert!(n > 0, "closed early: {}", String::from_utf8_lossy(&plain));
        let mut input = &chunk[..n];
        while !input.is_empty() {
            let (before_in, before_out) = (inflate.total_in(), inflate.total_out());
            inflate
                .decompress(input, &mut out, FlushDecompress::Sync)
                .expect("inflate");
            let used = (inflate.total_in() - before_in) as usize;
            plain.extend_from_slice(&out[..(inflate.total_out() - before_out) as usize]);
            input = &input[used..];
        }
    }
    let text = String::from_utf8_lossy(&plain);
    assert!(text.contains("c OK [READ-WRITE]"), "{text}");
    let at = plain.windows(big.len()).position(|w| w == big.as_slice());
    assert!(at.is_some(), "the message arrives byte-exact through DEFLATE");
    server.stop().await;
}
