//! The SMTP test fixtures prove themselves against independent clients: hickory-resolver
//! against `dns`, swaks against the Postfix sink, the Postfix relay against a scripted
//! peer, std sockets against `smtp_peer`, and dkimpy's own signer against `dkim_check`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::{RData, Record};
use tern_testkit::dns::TestDns;

// ---------------------------------------------------------------------------------------
// dns

/// A resolver that asks only `dns`, over UDP (TCP when a reply is truncated), caches
/// nothing, so each lookup reaches the server, and ignores /etc/hosts.
fn resolver(dns: &TestDns) -> TokioResolver {
    let addr = dns.addr();
    let mut udp = ConnectionConfig::udp();
    udp.port = addr.port();
    let mut tcp = ConnectionConfig::tcp();
    tcp.port = addr.port();
    let server = NameServerConfig::new(addr.ip(), true, vec![udp, tcp]);
    let mut options = ResolverOpts::default();
    options.cache_size = 0;
    options.attempts = 1;
    options.timeout = Duration::from_secs(5);
    // By default hickory answers from /etc/hosts first (localhost, 127.0.0.1's PTR).
    options.use_hosts_file = ResolveHosts::Never;
    TokioResolver::builder_with_config(
        ResolverConfig::from_parts(None, vec![], vec![server]),
        TokioRuntimeProvider::default(),
    )
    .with_options(options)
    .build()
    .expect("resolver")
}

fn mx_of(records: &[Record]) -> Vec<(u16, String)> {
    let mut mx: Vec<(u16, String)> = records
        .iter()
        .filter_map(|r| match &r.data {
            RData::MX(mx) => Some((mx.preference, mx.exchange.to_ascii())),
            _ => None,
        })
        .collect();
    mx.sort();
    mx
}

/// Each TXT record's character-strings, joined (as DKIM and SPF readers do).
fn txt_of(records: &[Record]) -> Vec<Vec<u8>> {
    records
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(txt) => Some(txt.txt_data.iter().flat_map(|s| s.iter().copied()).collect()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn dns_answers_mx_a_aaaa_and_flips_mid_test() {
    let dns = TestDns::start().unwrap_or_else(|e| panic!("{e}"));
    dns.set_mx("Remote.Test.", &[(20, "mx2.remote.test"), (10, "mx1.remote.test.")]);
    dns.set_a("mx1.remote.test", &[Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)]);
    dns.set_aaaa("mx1.remote.test", &[Ipv6Addr::LOCALHOST]);
    let resolver = resolver(&dns);

    let mx = resolver.mx_lookup("remote.test.").await.expect("MX");
    assert_eq!(
        mx_of(mx.answers()),
        vec![
            (10, "mx1.remote.test.".to_string()),
            (20, "mx2.remote.test.".to_string())
        ]
    );
    assert_eq!(mx.answers()[0].ttl, 60, "default TTL");
    // Names are case-insensitive.
    let a = resolver.ipv4_lookup("MX1.remote.TEST.").await.expect("A");
    let mut ips: Vec<Ipv4Addr> = a
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(a.0),
            _ => None,
        })
        .collect();
    ips.sort();
    assert_eq!(ips, vec![Ipv4Addr::LOCALHOST, Ipv4Addr::new(127, 0, 0, 2)]);
    let aaaa = resolver.ipv6_lookup("mx1.remote.test.").await.expect("AAAA");
    assert!(matches!(&aaaa.answers()[0].data, RData::AAAA(ip) if ip.0 == Ipv6Addr::LOCALHOST));

    // The test flips the MX while the server runs; the TTL applies from now on.
    dns.set_ttl(0);
    dns.set_mx("remote.test", &[(5, "backup.remote.test")]);
    let mx = resolver.mx_lookup("remote.test.").await.expect("MX after the flip");
    assert_eq!(mx_of(mx.answers()), vec![(5, "backup.remote.test.".to_string())]);
    assert_eq!(mx.answers()[0].ttl, 0);

    // Null MX (RFC 7505).
    dns.set_mx("nomail.test", &[(0, ".")]);
    let mx = resolver.mx_lookup("nomail.test.").await.expect("null MX");
    assert_eq!(mx_of(mx.answers()), vec![(0, ".".to_string())]);
    assert!(dns.queries() >= 5, "{}", dns.queries());
}

#[tokio::test]
async fn dns_answers_nxdomain_nodata_and_removal() {
    let dns = TestDns::start().unwrap_or_else(|e| panic!("{e}"));
    dns.set_a("host.remote.test", &[Ipv4Addr::LOCALHOST]);
    dns.set_txt("sel._domainkey.signer.test", &["v=DKIM1; p="]);
    let resolver = resolver(&dns);

    let unknown = resolver.mx_lookup("unknown.test.").await.expect_err("NXDOMAIN");
    assert!(unknown.is_nx_domain(), "{unknown:?}");
    // A known name without the asked type: NOERROR, no answers.
    let nodata = resolver.mx_lookup("host.remote.test.").await.expect_err("NODATA");
    assert!(nodata.is_no_records_found() && !nodata.is_nx_domain(), "{nodata:?}");
    // A name with names below it exists (RFC 8020).
    let between = resolver
        .txt_lookup("_domainkey.signer.test.")
        .await
        .expect_err("NODATA");
    assert!(!between.is_nx_domain(), "{between:?}");

    dns.remove("HOST.remote.test.");
    let removed = resolver.ipv4_lookup("host.remote.test.").await.expect_err("removed");
    assert!(removed.is_nx_domain(), "{removed:?}");

    // An empty MX set keeps the name (NODATA), unlike remove().
    dns.set_mx("bare.test", &[]);
    let bare = resolver.mx_lookup("bare.test.").await.expect_err("NODATA");
    assert!(!bare.is_nx_domain(), "{bare:?}");
}

#[tokio::test]
async fn dns_serves_long_txt_records_split_into_character_strings() {
    let dns = TestDns::start().unwrap_or_else(|e| panic!("{e}"));
    // A 2048-bit DKIM key's record is about 400 bytes; 1000 forces four strings and a
    // reply over 512 bytes.
    let key = format!("v=DKIM1; k=rsa; p={}", "A".repeat(1000));
    dns.set_txt("sel._domainkey.example.test", &[&key, "second record"]);
    let resolver = resolver(&dns);
    let txt = resolver.txt_lookup("sel._domainkey.example.test.").await.expect("TXT");
    let mut texts = txt_of(txt.answers());
    texts.sort();
    assert_eq!(texts, vec![b"second record".to_vec(), key.clone().into_bytes()]);
    let strings: Vec<usize> = txt
        .answers()
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) if t.txt_data.len() > 1 => Some(t.txt_data.iter().map(|s| s.len()).collect::<Vec<_>>()),
            _ => None,
        })
        .flatten()
        .collect();
    assert_eq!(strings, vec![255, 255, 255, key.len() - 765]);

    // Past the UDP payload size the server truncates and the resolver retries on TCP.
    let huge = "x".repeat(4000);
    dns.set_txt("huge.example.test", &[&huge]);
    let before = dns.queries();
    let txt = resolver.txt_lookup("huge.example.test.").await.expect("TXT over TCP");
    assert_eq!(txt_of(txt.answers()), vec![huge.into_bytes()]);
    assert_eq!(dns.queries() - before, 2, "one truncated UDP answer, then TCP");
}

#[tokio::test]
async fn dns_answers_ptr_and_follows_cnames() {
    let dns = TestDns::start().unwrap_or_else(|e| panic!("{e}"));
    // Not 127.0.0.1 or ::1: hickory answers their PTR ("localhost.") itself, RFC 6761.
    let v4 = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 25));
    let v6: IpAddr = "2001:db8::25".parse().expect("IPv6");
    dns.set_ptr(v4, "mail.example.test");
    dns.set_ptr(v6, "mail6.example.test.");
    dns.set_cname("smtp.example.test", "mail.example.test");
    dns.set_a("mail.example.test", &[Ipv4Addr::new(127, 0, 0, 9)]);
    let resolver = resolver(&dns);

    for (ip, name) in [(v4, "mail.example.test."), (v6, "mail6.example.test.")] {
        let ptr = resolver.reverse_lookup(ip).await.expect("PTR");
        assert!(
            matches!(&ptr.answers()[0].data, RData::PTR(found) if found.0.to_ascii() == name),
            "{ip}: {:?}",
            ptr.answers()
        );
    }
    let a = resolver.ipv4_lookup("smtp.example.test.").await.expect("A via CNAME");
    assert!(
        a.answers()
            .iter()
            .any(|r| matches!(&r.data, RData::A(ip) if ip.0 == Ipv4Addr::new(127, 0, 0, 9))),
        "{:?}",
        a.answers()
    );
    // Setting a record on an alias replaces the alias.
    dns.set_a("smtp.example.test", &[Ipv4Addr::new(127, 0, 0, 10)]);
    let a = resolver.ipv4_lookup("smtp.example.test.").await.expect("A");
    assert_eq!(a.answers().len(), 1, "{:?}", a.answers());
}

#[test]
fn dns_works_from_a_plain_test_and_stops_on_drop() {
    let dns = TestDns::start().unwrap_or_else(|e| panic!("{e}"));
    dns.set_a("x.test", &[Ipv4Addr::LOCALHOST]);
    let addr = dns.addr();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let answered = runtime.block_on(async { resolver(&dns).ipv4_lookup("x.test.").await });
    assert!(answered.is_ok(), "{answered:?}");
    drop(dns);
    // The port is free again for both protocols.
    std::net::UdpSocket::bind(addr).expect("UDP port released");
    std::net::TcpListener::bind(addr).expect("TCP port released");
}

// ---------------------------------------------------------------------------------------
// smtp_peer

mod smtp_peer {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    use tern_testkit::smtp_peer::{Behaviour, ScriptedSmtp, send_mail};

    const MESSAGE: &[u8] = b"From: a@sender.test\r\nSubject: hi\r\n\r\n.leading dot\r\nbody\r\n";

    /// A raw connection to the peer: what the test writes is exactly what it gets.
    struct Raw {
        reader: BufReader<TcpStream>,
        writer: TcpStream,
    }

    impl Raw {
        fn connect(peer: &ScriptedSmtp) -> Raw {
            let stream = TcpStream::connect(peer.addr()).expect("connect");
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
            Raw {
                writer: stream.try_clone().expect("clone"),
                reader: BufReader::new(stream),
            }
        }
        fn line(&mut self) -> String {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read");
            line
        }
        /// The next whole reply, continuation lines included.
        fn reply(&mut self) -> String {
            let mut reply = String::new();
            loop {
                let line = self.line();
                assert!(!line.is_empty(), "closed after {reply:?}");
                reply.push_str(&line);
                if line.as_bytes().get(3) != Some(&b'-') {
                    return reply;
                }
            }
        }
        fn send(&mut self, bytes: &[u8]) {
            self.writer.write_all(bytes).expect("write");
        }
        fn closed(&mut self) -> bool {
            let mut rest = Vec::new();
            self.reader.read_to_end(&mut rest).is_ok() && rest.is_empty()
        }
    }

    #[test]
    fn accept_records_pipelined_transactions_with_dot_unstuffing() {
        let peer = ScriptedSmtp::start(Behaviour::Accept).unwrap_or_else(|e| panic!("{e}"));
        let mut raw = Raw::connect(&peer);
        assert!(raw.line().starts_with("220 "));
        raw.send(b"EHLO client.test\r\n");
        let ehlo = raw.reply();
        for extension in ["PIPELINING", "8BITMIME", "SMTPUTF8", "SIZE 31457280"] {
            assert!(
                ehlo.contains(&format!("250-{extension}\r\n")) || ehlo.contains(&format!("250 {extension}\r\n")),
                "{ehlo}"
            );
        }
        assert!(!ehlo.contains("STARTTLS"), "{ehlo}");
        // RFC 2920: the whole envelope in one write; replies come back in order.
        raw.send(b"MAIL FROM:<a@sender.test> BODY=8BITMIME SMTPUTF8\r\nRCPT TO:<b@remote.test>\r\nRCPT TO:<c@remote.test>\r\nDATA\r\n");
        assert!(raw.reply().starts_with("250 2.1.0"));
        assert!(raw.reply().starts_with("250 2.1.5"));
        assert!(raw.reply().starts_with("250 2.1.5"));
        assert!(raw.reply().starts_with("354 "));
        raw.send(
            b"Subject: x\r\n\r\n..stuffed\r\n.\r\nRSET\r\nNOOP\r\nMAIL FROM:<>\r\nRCPT TO:<d@remote.test>\r\nDATA\r\n",
        );
        assert!(raw.reply().starts_with("250 2.0.0 Ok: queued"));
        assert!(raw.reply().starts_with("250 2.0.0"), "RSET");
        assert!(raw.reply().starts_with("250 2.0.0"), "NOOP");
        assert!(raw.reply().starts_with("250 2.1.0"));
        assert!(raw.reply().starts_with("250 2.1.5"));
        assert!(raw.reply().starts_with("354 "));
        raw.send("Subject: ü\r\n\r\nbounce\r\n.\r\nQUIT\r\n".as_bytes());
        assert!(raw.reply().starts_with("250 "));
        assert!(raw.reply().starts_with("221 "));
        assert!(raw.closed(), "closed after QUIT");

        let transactions = peer.transactions();
        assert_eq!(transactions.len(), 2);
        let first = &transactions[0];
        assert_eq!(first.helo, "client.test");
        assert_eq!(first.mail_from, "a@sender.test");
        assert_eq!(first.mail_parameters, vec!["BODY=8BITMIME", "SMTPUTF8"]);
        assert_eq!(first.rcpt_to, vec!["b@remote.test", "c@remote.test"]);
        assert_eq!(first.data, b"Subject: x\r\n\r\n.stuffed\r\n");
        assert_eq!(transactions[1].mail_from, "", "null sender");
        assert_eq!(transactions[1].data, "Subject: ü\r\n\r\nbounce\r\n".as_bytes());
        assert_eq!(peer.connections(), 1);
        assert!(peer.commands().contains(&"RSET".to_string()), "{:?}", peer.commands());
    }

    #[test]
    fn send_mail_delivers_and_the_peer_counts_connections() {
        let peer = ScriptedSmtp::start(Behaviour::Accept).unwrap_or_else(|e| panic!("{e}"));
        let reply = send_mail(peer.addr(), "a@sender.test", &["b@remote.test"], MESSAGE).expect("sent");
        assert!(reply.starts_with("250 "), "{reply}");
        // Bare LFs become CRLF and non-ASCII asks for BODY=8BITMIME and SMTPUTF8.
        send_mail(
            peer.addr(),
            "ä@sender.test",
            &["b@remote.test"],
            "Subject: ö\n\nx\n".as_bytes(),
        )
        .expect("sent");
        let transactions = peer.wait_for_transactions(2, Duration::from_secs(5)).expect("two");
        assert_eq!(transactions[0].data, MESSAGE);
        assert_eq!(transactions[1].data, "Subject: ö\r\n\r\nx\r\n".as_bytes());
        assert_eq!(transactions[1].mail_parameters, vec!["BODY=8BITMIME", "SMTPUTF8"]);
        assert_eq!(peer.connections(), 2);
    }

    #[test]
    fn reject_and_tempfail_refuse_every_recipient() {
        let rejecting = ScriptedSmtp::start(Behaviour::RejectAll).unwrap_or_else(|e| panic!("{e}"));
        let error = send_mail(rejecting.addr(), "a@x.test", &["b@y.test"], MESSAGE).expect_err("rejected");
        assert!(error.contains("RCPT TO:<b@y.test> refused: 550 5.1.1"), "{error}");
        let deferring = ScriptedSmtp::start(Behaviour::TempfailAll).unwrap_or_else(|e| panic!("{e}"));
        let error = send_mail(deferring.addr(), "a@x.test", &["b@y.test"], MESSAGE).expect_err("deferred");
        assert!(error.contains("451 4.3.0"), "{error}");
        assert!(rejecting.transactions().is_empty() && deferring.transactions().is_empty());

        let greeting = ScriptedSmtp::start(Behaviour::TempfailGreeting).unwrap_or_else(|e| panic!("{e}"));
        let mut raw = Raw::connect(&greeting);
        assert!(raw.line().starts_with("421 4.3.2"));
        assert!(raw.closed(), "closed after 421");
        let error = send_mail(greeting.addr(), "a@x.test", &["b@y.test"], MESSAGE).expect_err("421");
        assert!(error.contains("421"), "{error}");
        assert_eq!(greeting.connections(), 2);
    }

    #[test]
    fn drop_mid_data_hangs_up_without_a_reply() {
        let peer = ScriptedSmtp::start(Behaviour::DropMidData).unwrap_or_else(|e| panic!("{e}"));
        let error = send_mail(peer.addr(), "a@x.test", &["b@y.test"], MESSAGE).expect_err("dropped");
        assert!(
            error.contains("connection closed") || error.contains("cannot"),
            "{error}"
        );
        assert!(peer.transactions().is_empty());
    }

    #[test]
    fn accept_after_tempfails_the_first_transactions_then_switches() {
        let peer = ScriptedSmtp::start(Behaviour::AcceptAfter(2)).unwrap_or_else(|e| panic!("{e}"));
        for _ in 0..2 {
            let error = send_mail(peer.addr(), "a@x.test", &["b@y.test"], MESSAGE).expect_err("deferred");
            assert!(error.contains("the message was refused: 451 4.3.0"), "{error}");
        }
        send_mail(peer.addr(), "a@x.test", &["b@y.test"], MESSAGE).expect("third is accepted");
        assert_eq!(peer.transactions().len(), 1);
        assert_eq!(peer.connections(), 3);

        peer.set_behaviour(Behaviour::RejectAll);
        assert!(send_mail(peer.addr(), "a@x.test", &["b@y.test"], MESSAGE).is_err());
        let addr = peer.addr();
        drop(peer);
        assert!(TcpStream::connect(addr).is_err(), "port closed on drop");
    }
}

// ---------------------------------------------------------------------------------------
// postfix

mod postfix {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::net::TcpStream;
    use std::process::Command;
    use std::sync::Arc;
    use std::time::Duration;

    use tern_testkit::postfix::Postfix;
    use tern_testkit::smtp_peer::{Behaviour, ScriptedSmtp};

    const WAIT: Duration = Duration::from_secs(20);

    fn skip(test: &str) -> bool {
        Postfix::skip_if_missing(test)
    }

    fn swaks_installed() -> bool {
        std::path::Path::new("/usr/bin/swaks").exists()
    }

    /// swaks's transcript and whether it exited 0.
    fn swaks(port: u16, to: &str, extra: &[&str]) -> (bool, String) {
        let output = Command::new("swaks")
            .args([
                "--server",
                &format!("127.0.0.1:{port}"),
                "--to",
                to,
                "--from",
                "x@sender.test",
            ])
            .args(["--header", "Subject: swaks test"])
            .args(extra)
            .output()
            .expect("run swaks");
        (
            output.status.success(),
            format!(
                "{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ),
        )
    }

    #[test]
    fn the_sink_delivers_swaks_mail_per_recipient_and_refuses_scripted_ones() {
        if skip("the_sink_delivers_swaks_mail_per_recipient_and_refuses_scripted_ones") {
            return;
        }
        if !swaks_installed() {
            eprintln!("skipping: swaks is not installed (apt-get install swaks; scripts/test.sh does this)");
            return;
        }
        let sink = Postfix::sink(&["remote.test", "other.test"])
            .reject("bounce@remote.test")
            .tempfail("later@remote.test")
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let port = sink.smtp_port();

        let (ok, transcript) = swaks(port, "alice@remote.test", &[]);
        assert!(ok, "{transcript}");
        let (ok, transcript) = swaks(port, "Bob@Remote.Test,carol@other.test", &["--body", "two at once"]);
        assert!(ok, "{transcript}");
        let alice = sink
            .wait_for("alice@remote.test", 1, WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        let text = String::from_utf8_lossy(&alice[0]);
        assert!(text.contains("Delivered-To: alice@remote.test"), "{text}");
        assert!(text.contains("Subject: swaks test"), "{text}");
        assert!(text.contains("by mx.remote.test (Postfix"), "Received line: {text}");
        sink.wait_for("bob@remote.test", 1, WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        sink.wait_for("carol@other.test", 1, WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(sink.messages("alice@remote.test").len(), 1, "one copy each");
        // SMTPUTF8 (RFC 6531): a non-ASCII local part is delivered too.
        sink.submit(
            "x@sender.test",
            &["ålice@remote.test"],
            "Subject: ü\r\n\r\nhej\r\n".as_bytes(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let utf8 = sink
            .wait_for("ålice@remote.test", 1, WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            String::from_utf8_lossy(&utf8[0]).contains("Subject: ü\n"),
            "LF endings in the maildir"
        );
        assert_eq!(sink.all_messages().len(), 4);

        let (ok, transcript) = swaks(port, "bounce@remote.test", &[]);
        assert!(!ok && transcript.contains("<** 550 5.1.1"), "{transcript}");
        let (ok, transcript) = swaks(port, "later@remote.test", &[]);
        assert!(!ok && transcript.contains("<** 450 4.2.0"), "{transcript}");
        // A real MX: no relaying, even from loopback.
        let (ok, transcript) = swaks(port, "someone@elsewhere.test", &[]);
        assert!(!ok && transcript.contains("Relay access denied"), "{transcript}");
        assert!(sink.messages("bounce@remote.test").is_empty());
        assert_eq!(sink.queued().expect("postqueue"), 0);
    }

    /// The EHLO reply of `stream` (its continuation lines joined).
    fn ehlo<S: Read + Write>(stream: &mut BufReader<S>) -> String {
        stream.get_mut().write_all(b"EHLO client.test\r\n").expect("EHLO");
        let mut reply = String::new();
        loop {
            let mut line = String::new();
            stream.read_line(&mut line).expect("EHLO reply");
            reply.push_str(&line);
            if line.as_bytes().get(3) != Some(&b'-') {
                return reply;
            }
        }
    }

    fn line<S: Read>(stream: &mut BufReader<S>) -> String {
        let mut line = String::new();
        stream.read_line(&mut line).expect("read");
        line
    }

    /// Opportunistic STARTTLS as a sending MTA does it, with rustls (what Tern uses)
    /// trusting only the sink's certificate.
    #[test]
    fn the_sink_offers_starttls_with_its_certificate() {
        if skip("the_sink_offers_starttls_with_its_certificate") {
            return;
        }
        use rustls_pki_types::pem::PemObject as _;
        let sink = Postfix::sink(&["remote.test"])
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let cert = sink.cert_pem().expect("certificate").to_string();
        assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"), "{cert}");

        let tcp = TcpStream::connect(sink.smtp_addr()).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut plain = BufReader::new(tcp);
        assert!(line(&mut plain).starts_with("220 "));
        let offer = ehlo(&mut plain);
        assert!(offer.contains("250-STARTTLS"), "{offer}");
        plain.get_mut().write_all(b"STARTTLS\r\n").expect("STARTTLS");
        assert!(line(&mut plain).starts_with("220 2.0.0"));

        let mut roots = rustls::RootCertStore::empty();
        for der in rustls_pki_types::CertificateDer::pem_slice_iter(cert.as_bytes()) {
            roots.add(der.expect("PEM")).expect("trust anchor");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls_pki_types::ServerName::try_from("mx.remote.test").expect("name");
        let connection = rustls::ClientConnection::new(Arc::new(config), name).expect("TLS client");
        let mut tls = BufReader::new(rustls::StreamOwned::new(connection, plain.into_inner()));
        // RFC 3207 §4.2: the session starts over; STARTTLS is no longer offered.
        let offer = ehlo(&mut tls);
        assert!(
            offer.starts_with("250-mx.remote.test") && !offer.contains("STARTTLS"),
            "{offer}"
        );
        for (command, code) in [
            ("MAIL FROM:<x@sender.test>", "250"),
            ("RCPT TO:<tls@remote.test>", "250"),
            ("DATA", "354"),
            ("Subject: over TLS\r\n\r\nsecret\r\n.", "250"),
            ("QUIT", "221"),
        ] {
            tls.get_mut()
                .write_all(format!("{command}\r\n").as_bytes())
                .expect("write");
            let reply = line(&mut tls);
            assert!(reply.starts_with(code), "{command}: {reply}");
        }
        let mail = sink
            .wait_for("tls@remote.test", 1, WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(
            String::from_utf8_lossy(&mail[0]).contains("(using TLSv1.3"),
            "{}",
            String::from_utf8_lossy(&mail[0])
        );
        sink.wait_log("TLS connection established", WAIT)
            .unwrap_or_else(|e| panic!("{e}"));

        let plain_sink = Postfix::sink(&["remote.test"])
            .tls(false)
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(plain_sink.cert_pem(), None);
        let tcp = TcpStream::connect(plain_sink.smtp_addr()).expect("connect");
        tcp.set_read_timeout(Some(WAIT)).expect("timeout");
        let mut plain = BufReader::new(tcp);
        line(&mut plain);
        let offer = ehlo(&mut plain);
        assert!(!offer.contains("STARTTLS"), "{offer}");
    }

    #[test]
    fn the_relay_forwards_submitted_mail_to_its_relayhost_and_retries() {
        if skip("the_relay_forwards_submitted_mail_to_its_relayhost_and_retries") {
            return;
        }
        // The relayhost tempfails the first delivery: Postfix retries within seconds.
        let relayhost = ScriptedSmtp::start(Behaviour::AcceptAfter(1)).unwrap_or_else(|e| panic!("{e}"));
        let relay = Postfix::relay(relayhost.addr())
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        let message =
            "From: bob@sender.test\r\nTo: alice@tern.test\r\nSubject: relayed ü\r\n\r\nHello, Tern.\r\n..dots stay\r\n";
        let reply = relay
            .submit(
                "bob@sender.test",
                &["alice@tern.test", "ålice@tern.test"],
                message.as_bytes(),
            )
            .unwrap_or_else(|e| panic!("{e}\n{}", relay.log()));
        assert!(reply.contains("queued as"), "{reply}");
        let transactions = relayhost
            .wait_for_transactions(1, WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", relay.log()));
        let t = &transactions[0];
        assert_eq!(t.mail_from, "bob@sender.test");
        assert_eq!(t.rcpt_to, vec!["alice@tern.test", "ålice@tern.test"]);
        assert_eq!(t.helo, "relay.tern-testkit.test");
        assert!(
            t.mail_parameters.iter().any(|p| p == "SMTPUTF8"),
            "{:?}",
            t.mail_parameters
        );
        let data = String::from_utf8_lossy(&t.data);
        assert!(data.contains("Subject: relayed ü\r\n"), "{data}");
        assert!(data.contains("\r\n..dots stay\r\n"), "dot-stuffed both ways: {data}");
        assert!(data.contains("by relay.tern-testkit.test (Postfix)"), "{data}");
        assert_eq!(relayhost.connections(), 2, "one deferred attempt, one delivery");
        let log = relay.wait_log("status=sent", WAIT).unwrap_or_else(|e| panic!("{e}"));
        assert!(log.contains("status=deferred"), "{log}");
        assert!(
            log.contains(&format!("relay=127.0.0.1[127.0.0.1]:{}", relayhost.port())),
            "{log}"
        );
        assert_eq!(relay.queued().expect("postqueue"), 0);
    }

    #[test]
    fn a_relay_holds_mail_while_the_relayhost_refuses_and_flush_retries() {
        if skip("a_relay_holds_mail_while_the_relayhost_refuses_and_flush_retries") {
            return;
        }
        let relayhost = ScriptedSmtp::start(Behaviour::TempfailAll).unwrap_or_else(|e| panic!("{e}"));
        let relay = Postfix::relay(relayhost.addr())
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        relay
            .submit("a@sender.test", &["b@tern.test"], b"Subject: wait\r\n\r\nx\r\n")
            .unwrap_or_else(|e| panic!("{e}"));
        relay
            .wait_log("status=deferred", WAIT)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(relay.queued().expect("postqueue"), 1);
        relayhost.set_behaviour(Behaviour::Accept);
        relay.flush().unwrap_or_else(|e| panic!("{e}"));
        relayhost
            .wait_for_transactions(1, WAIT)
            .unwrap_or_else(|e| panic!("{e}\n{}", relay.log()));
    }

    #[test]
    fn instances_run_side_by_side_and_leave_nothing_behind() {
        if skip("instances_run_side_by_side_and_leave_nothing_behind") {
            return;
        }
        let mut one = Postfix::sink(&["one.test"]).start().unwrap_or_else(|e| panic!("{e}"));
        let two = Postfix::sink(&["two.test"])
            .myhostname("mx.two.test")
            .start()
            .unwrap_or_else(|e| panic!("{e}"));
        assert_ne!(one.smtp_port(), two.smtp_port());
        one.submit("a@x.test", &["u@one.test"], b"Subject: 1\r\n\r\n1\r\n")
            .expect("one");
        two.submit("a@x.test", &["u@two.test"], b"Subject: 2\r\n\r\n2\r\n")
            .expect("two");
        one.wait_for("u@one.test", 1, WAIT).unwrap_or_else(|e| panic!("{e}"));
        two.wait_for("u@two.test", 1, WAIT).unwrap_or_else(|e| panic!("{e}"));
        assert!(one.messages("u@two.test").is_empty());
        // Relaying through a sink is refused: the domain is the other instance's.
        assert!(one.submit("a@x.test", &["u@two.test"], b"x\r\n").is_err());

        let port = one.smtp_port();
        one.stop().expect("stop");
        one.stop().expect("a second stop is harmless");
        assert!(std::net::TcpStream::connect(("127.0.0.1", port)).is_err());
        assert_eq!(one.messages("u@one.test").len(), 1, "mail kept after stop");
        let dir = two.dir().to_path_buf();
        let config = two.config_dir();
        drop(two);
        assert!(!dir.exists(), "{} left behind", dir.display());
        // No master of ours is left.
        let masters = Command::new("pgrep").args(["-f", "master -c"]).output().expect("pgrep");
        let left = String::from_utf8_lossy(&masters.stdout).into_owned();
        let ours = left.lines().filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.contains(&config.display().to_string()))
        });
        assert_eq!(ours.count(), 0, "{left}");
    }
}

// ---------------------------------------------------------------------------------------
// dkim_check

mod dkim_check {
    use tern_testkit::dkim_check::{
        dkimpy_check, dkimpy_sign, dkimpy_verify, opendkim_installed, rsa_key_pair, skip_if_missing,
    };

    const MESSAGE: &[u8] = b"From: Alice <alice@example.test>\r\nTo: bob@remote.test\r\nSubject: signed\r\nDate: Mon, 1 Jan 2024 00:00:00 +0000\r\nMessage-ID: <1@example.test>\r\n\r\nHello, Bob.\r\n";

    #[test]
    fn dkimpy_verifies_its_own_signature_and_refuses_tampering() {
        if skip_if_missing("dkimpy_verifies_its_own_signature_and_refuses_tampering") {
            return;
        }
        let (private_pem, public_txt) = rsa_key_pair(2048).unwrap_or_else(|e| panic!("{e}"));
        assert!(public_txt.starts_with("v=DKIM1; k=rsa; p=MII"), "{public_txt}");
        assert!(public_txt.len() > 255, "a 2048-bit key record needs splitting in DNS");
        let signed = dkimpy_sign(MESSAGE, "sel", "example.test", &private_pem).unwrap_or_else(|e| panic!("{e}"));
        assert!(
            signed.starts_with(b"DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=example.test;"),
            "{}",
            String::from_utf8_lossy(&signed)
        );
        let txt = [("sel._domainkey.example.test", public_txt.as_str())];

        let verdict = dkimpy_check(&signed, &txt).unwrap_or_else(|e| panic!("{e}"));
        assert!(verdict.verified, "{}", verdict.log);
        assert_eq!(verdict.asked, vec!["sel._domainkey.example.test"]);
        // Names match case-insensitively, with or without the final dot.
        assert_eq!(
            dkimpy_verify(&signed, &[("SEL._domainkey.Example.Test.", &public_txt)]),
            Ok(true)
        );

        // One byte of the body changed: the body hash no longer matches.
        let mut tampered = signed.clone();
        let at = tampered.len() - 4;
        tampered[at] ^= 0x01;
        let verdict = dkimpy_check(&tampered, &txt).unwrap_or_else(|e| panic!("{e}"));
        assert!(!verdict.verified);
        assert!(verdict.log.contains("body hash mismatch"), "{}", verdict.log);
        // No key published, or another key: not verified.
        assert_eq!(dkimpy_verify(&signed, &[]), Ok(false));
        let (_, other_txt) = rsa_key_pair(1024).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            dkimpy_verify(&signed, &[("sel._domainkey.example.test", &other_txt)]),
            Ok(false)
        );
        // An unsigned message does not verify either.
        assert_eq!(dkimpy_verify(MESSAGE, &txt), Ok(false));
        // LF line endings, as a maildir stores them, verify the same.
        let lf: Vec<u8> = signed.iter().copied().filter(|&b| b != b'\r').collect();
        assert_eq!(dkimpy_verify(&lf, &txt), Ok(true));
        eprintln!("opendkim-tools installed: {}", opendkim_installed());
    }
}
