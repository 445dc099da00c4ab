//! The client against a scripted TCP server.

use std::io::Read;
use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use super::*;

/// A request as the test server saw it.
#[derive(Debug)]
struct Seen {
    connection: usize,
    head: String,
    body: Vec<u8>,
}

/// Serves `replies` in order, one per request. `close_after[i]` closes the connection
/// after the i-th reply. Reports each request with the index of its connection.
fn server(
    replies: Vec<Vec<u8>>,
    close_after: Vec<bool>,
) -> io::Result<(SocketAddr, mpsc::Receiver<Seen>, thread::JoinHandle<()>)> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut replies = replies.into_iter().zip(close_after).peekable();
        let mut connection = 0;
        while replies.peek().is_some() {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            stream
                .set_read_timeout(Some(Duration::from_secs(10)))
                .unwrap_or_default();
            connection += 1;
            let mut reader = BufReader::new(stream);
            for (reply, close) in replies.by_ref() {
                let Ok(head) = read_request_head(&mut reader) else {
                    return;
                };
                let length = head
                    .lines()
                    .find_map(|l| l.strip_prefix("Content-Length: "))
                    .and_then(|v| v.trim().parse::<usize>().ok())
                    .unwrap_or(0);
                let mut body = vec![0; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                let _ = tx.send(Seen {
                    connection,
                    head,
                    body,
                });
                if reader.get_mut().write_all(&reply).is_err() {
                    return;
                }
                if close {
                    break;
                }
            }
        }
    });
    Ok((addr, rx, handle))
}

fn read_request_head(reader: &mut impl BufRead) -> io::Result<String> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        if line == "\r\n" {
            return Ok(head);
        }
        head.push_str(&line);
    }
}

fn client(addr: SocketAddr) -> io::Result<HttpClient> {
    let mut client = HttpClient::new(addr)?;
    client.set_read_timeout(Some(Duration::from_secs(10)))?;
    Ok(client)
}

#[test]
fn content_length_body() -> anyhow::Result<()> {
    let reply = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello";
    let (addr, seen, server) = server(vec![reply.to_vec()], vec![false])?;
    let mut client = client(addr)?;
    let response = client.request(
        "POST",
        "/function/Echo",
        &[("X-Gloam-Timeout", "100")],
        b"input",
    )?;
    assert_eq!(response.status, 200);
    assert_eq!(response.header("content-type"), Some("text/plain"));
    assert_eq!(response.header("CONTENT-LENGTH"), Some("5"));
    assert_eq!(response.header("missing"), None);
    assert_eq!(response.text(), "hello");

    let request = seen.recv_timeout(Duration::from_secs(10))?;
    assert!(request.head.starts_with("POST /function/Echo HTTP/1.1\r\n"));
    assert!(request.head.contains("\r\nX-Gloam-Timeout: 100\r\n"));
    assert!(request.head.contains(&format!("\r\nHost: {addr}\r\n")));
    assert!(request.head.contains("\r\nContent-Length: 5\r\n"));
    assert_eq!(request.body, b"input");
    drop(client);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    Ok(())
}

#[test]
fn chunked_body() -> anyhow::Result<()> {
    let reply = b"HTTP/1.1 502 Bad Gateway\r\nTransfer-Encoding: chunked\r\n\r\n\
        5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n";
    let next = b"HTTP/1.1 204 No Content\r\n\r\n";
    let (addr, seen, server) = server(vec![reply.to_vec(), next.to_vec()], vec![false; 2])?;
    let mut client = client(addr)?;
    let response = client.get("/status")?;
    assert_eq!(response.status, 502);
    assert_eq!(response.text(), "hello, world");
    // The chunked body was consumed exactly: the next response parses on the same stream.
    let response = client.get("/status")?;
    assert_eq!(response.status, 204);
    assert!(response.body.is_empty());
    assert_eq!(client.connections_opened(), 1);
    let request = seen.recv_timeout(Duration::from_secs(10))?;
    assert!(request.head.starts_with("GET /status HTTP/1.1\r\n"));
    drop(client);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    Ok(())
}

#[test]
fn keep_alive_reuses_one_connection() -> anyhow::Result<()> {
    let replies = (0..3)
        .map(|i| format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{i}").into_bytes())
        .collect();
    let (addr, seen, server) = server(replies, vec![false; 3])?;
    let mut client = client(addr)?;
    for i in 0..3 {
        let response = client.post("/function/Echo", format!("call {i}").as_bytes())?;
        assert_eq!(response.text(), i.to_string());
    }
    assert_eq!(client.connections_opened(), 1);
    for i in 0..3 {
        let request = seen.recv_timeout(Duration::from_secs(10))?;
        assert_eq!(request.connection, 1);
        assert_eq!(request.body, format!("call {i}").as_bytes());
    }
    drop(client);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    Ok(())
}

#[test]
fn reconnects_when_the_server_closed_the_connection() -> anyhow::Result<()> {
    // The server closes after each reply without saying so: the client only finds out
    // when it reuses the connection.
    let replies = (0..3)
        .map(|i| format!("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\n{i}").into_bytes())
        .collect();
    let (addr, seen, server) = server(replies, vec![true; 3])?;
    let mut client = client(addr)?;
    for i in 0..3 {
        let response = client.post("/p", b"x")?;
        assert_eq!(response.text(), i.to_string());
    }
    assert_eq!(client.connections_opened(), 3);
    let connections: Vec<usize> = (0..3)
        .map(|_| {
            seen.recv_timeout(Duration::from_secs(10))
                .map(|s| s.connection)
        })
        .collect::<Result<_, _>>()?;
    assert_eq!(connections, [1, 2, 3]);
    drop(client);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    Ok(())
}

#[test]
fn connection_close_drops_the_connection() -> anyhow::Result<()> {
    let replies = vec![
        b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 1\r\n\r\na".to_vec(),
        b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nb".to_vec(),
    ];
    let (addr, _seen, server) = server(replies, vec![true, false])?;
    let mut client = client(addr)?;
    assert_eq!(client.get("/")?.text(), "a");
    assert_eq!(client.get("/")?.text(), "b");
    assert_eq!(client.connections_opened(), 2);
    drop(client);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    Ok(())
}

#[test]
fn malformed_responses_and_requests_are_errors() -> anyhow::Result<()> {
    let (addr, _seen, server) = server(vec![b"SMTP ready\r\n\r\n".to_vec()], vec![true])?;
    let mut client = client(addr)?;
    let e = client
        .get("/")
        .err()
        .ok_or(anyhow::anyhow!("expected an error"))?;
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(e.to_string().contains("not an HTTP/1.x status line"), "{e}");
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;

    let e = client.request("GET", "/a b", &[], b"").err();
    assert!(e.is_some_and(|e| e.kind() == io::ErrorKind::InvalidInput));
    let e = client.request("GET", "/", &[("X", "a\r\nB: c")], b"").err();
    assert!(e.is_some_and(|e| e.kind() == io::ErrorKind::InvalidInput));
    let e = client
        .request("GET", "/", &[("Content-Length", "3")], b"")
        .err();
    assert!(e.is_some_and(|e| e.kind() == io::ErrorKind::InvalidInput));
    Ok(())
}

#[test]
fn truncated_body_is_an_error_not_a_retry() -> anyhow::Result<()> {
    let reply = b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc".to_vec();
    let (addr, _seen, server) = server(vec![reply], vec![true])?;
    let mut client = client(addr)?;
    let e = client
        .get("/")
        .err()
        .ok_or(anyhow::anyhow!("expected an error"))?;
    assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof);
    assert!(e.to_string().contains("3 of 10 body bytes"), "{e}");
    assert_eq!(client.connections_opened(), 1);
    server
        .join()
        .map_err(|_| anyhow::anyhow!("server panicked"))?;
    Ok(())
}
