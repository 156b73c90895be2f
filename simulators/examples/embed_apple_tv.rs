//! A fake Apple TV inside a client's own test: start it, ask `/info` over a plain TCP stream,
//! print the model it reports, make its next `/info` fail with a fault, and shut it down.
//!
//! `cargo run -p airtwin-simulators --example embed_apple_tv`

use std::error::Error;

use airtwin_simulators::fault::{Action, Fault, Match};
use airtwin_simulators::AppleTv;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Sends `GET /info` on a new connection and answers status and body (a binary plist,
/// docs/protocols/airplay.md).
async fn get_info(addr: std::net::SocketAddr) -> Result<(u16, Vec<u8>), Box<dyn Error>> {
    let mut conn = TcpStream::connect(addr).await?;
    conn.write_all(b"GET /info HTTP/1.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let (status, head_len, body_len) = loop {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err("connection closed before a whole response".into());
        }
        raw.extend_from_slice(&buf[..n]);
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        if let httparse::Status::Complete(head_len) = resp.parse(&raw)? {
            let body_len = resp
                .headers
                .iter()
                .find(|h| h.name.eq_ignore_ascii_case("Content-Length"))
                .and_then(|h| std::str::from_utf8(h.value).ok()?.trim().parse().ok())
                .unwrap_or(0usize);
            break (resp.code.unwrap_or(0), head_len, body_len);
        }
    };
    while raw.len() < head_len + body_len {
        let n = conn.read(&mut buf).await?;
        if n == 0 {
            return Err("connection closed inside the body".into());
        }
        raw.extend_from_slice(&buf[..n]);
    }
    Ok((status, raw[head_len..head_len + body_len].to_vec()))
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn Error>> {
    let tv = AppleTv::builder()
        .name("Living Room")
        .seed(7)
        .spawn()
        .await?;
    println!(
        "apple tv at {} (dacp on {:?})",
        tv.addr(),
        tv.port_of("dacp")
    );

    let (status, body) = get_info(tv.addr()).await?;
    let info = plist::Value::from_reader(std::io::Cursor::new(body))?;
    let model = info
        .as_dictionary()
        .and_then(|d| d.get("model"))
        .and_then(|m| m.as_string())
        .ok_or("/info has no model")?;
    println!("GET /info: {status}, model {model}");

    tv.add_fault(Fault {
        when: Match {
            path: Some("/info".into()),
            ..Match::default()
        },
        action: Action::Respond {
            status: 503,
            headers: Default::default(),
            body: String::new(),
        },
        times: Some(1),
        after: 0,
        probability: 1.0,
    });
    let (status, _) = get_info(tv.addr()).await?;
    println!("GET /info with the fault: {status}");
    if status != 503 {
        return Err(format!("the fault did not apply: {status}").into());
    }
    println!("{} events recorded", tv.events().len());
    tv.shutdown().await;
    Ok(())
}
