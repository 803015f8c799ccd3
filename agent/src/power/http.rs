//! `http://HOST[:PORT]/PATH`: up when a GET returns a 2xx status.
//!
//! One fresh HTTP/1.1 connection per probe (no pooling: a kept-alive
//! connection would say nothing about whether the device still has power),
//! `Connection: close`, no redirects followed (a 3xx is *down*: point the
//! target at the final URL), the body is not read. The timeout covers
//! resolution, connect, request and response headers.

use super::{within, Endpoint, Host, Probe, ProbeError, Resolve};
use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::Empty;
use hyper::header::{CONNECTION, HOST, USER_AGENT};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::error::Error as _;
use std::sync::Arc;
use std::time::Duration;

const UA: &str = concat!("coolmesh/", env!("CARGO_PKG_VERSION"), " (power probe)");

/// HTTP GET probe.
pub struct HttpProbe {
    label: String,
    endpoint: Endpoint,
    authority: String,
    path: String,
}

impl HttpProbe {
    /// A probe of `http://{authority}{path}` connecting to `host:port`,
    /// reported as `label`.
    pub fn new(
        label: &str,
        host: Host,
        port: u16,
        authority: &str,
        path: &str,
        resolver: Arc<dyn Resolve>,
    ) -> Self {
        Self {
            label: label.to_string(),
            endpoint: Endpoint::new(host, port, resolver),
            authority: authority.to_string(),
            path: path.to_string(),
        }
    }

    async fn get(&self) -> Result<(), ProbeError> {
        let stream = self.endpoint.connect().await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| ProbeError::Protocol(format!("HTTP handshake: {}", chain(&e))))?;
        let req = Request::get(self.path.as_str())
            .header(HOST, self.authority.as_str())
            .header(USER_AGENT, UA)
            .header(CONNECTION, "close")
            .body(Empty::new())
            .map_err(|e| ProbeError::Local(format!("cannot build request: {e}")))?;
        // Drive the connection in this future (not a spawned task), so that
        // a timeout drops the socket with everything else. The connection
        // may finish (server closed) in the same poll that delivered the
        // response, so when it ends first, the response is still collected.
        let send = sender.send_request(req);
        tokio::pin!(conn, send);
        let bad = |e: &hyper::Error| {
            ProbeError::Protocol(format!("no valid HTTP response: {}", chain(e)))
        };
        let resp = tokio::select! {
            biased;
            r = &mut send => r.map_err(|e| bad(&e))?,
            c = &mut conn => match (send.await, c) {
                (Ok(resp), _) => resp,
                (Err(_), Err(e)) | (Err(e), Ok(())) => return Err(bad(&e)),
            },
        };
        let status = resp.status();
        if status.is_success() {
            Ok(())
        } else {
            Err(ProbeError::Down(format!(
                "HTTP status {status} (only 2xx means up)"
            )))
        }
    }
}

/// An error and its sources, `a: b: c`, without repeats.
fn chain(e: &hyper::Error) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let s_str = s.to_string();
        if !out.contains(&s_str) {
            out.push_str(": ");
            out.push_str(&s_str);
        }
        src = s.source();
    }
    out
}

impl Probe for HttpProbe {
    fn target(&self) -> &str {
        &self.label
    }

    fn probe(&self, timeout: Duration) -> BoxFuture<'_, Result<(), ProbeError>> {
        Box::pin(within(timeout, self.get()))
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{times_out_at_300ms, FakeResolver, LOOPBACK};
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::oneshot;

    const T: Duration = Duration::from_secs(2);

    /// A one-shot server on 127.0.0.1 that reads the request head, then
    /// writes `reply` (or, with `None`, never answers), and returns the
    /// request it saw.
    async fn serve_once(reply: Option<&'static [u8]>) -> (u16, oneshot::Receiver<String>) {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let (tx, rx) = oneshot::channel();
        tokio::spawn(async move {
            let (mut s, _) = l.accept().await.unwrap();
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                req.extend_from_slice(&buf[..n]);
            }
            let _ = tx.send(String::from_utf8_lossy(&req).into_owned());
            match reply {
                Some(r) => {
                    let _ = s.write_all(r).await;
                    let _ = s.shutdown().await;
                }
                None => tokio::time::sleep(Duration::from_secs(30)).await,
            }
        });
        (port, rx)
    }

    fn probe(port: u16, path: &str) -> HttpProbe {
        let authority = format!("127.0.0.1:{port}");
        HttpProbe::new(
            "http://test",
            LOOPBACK,
            port,
            &authority,
            path,
            Arc::new(FakeResolver::Fail),
        )
    }

    #[tokio::test]
    async fn ok_is_up_and_request_is_well_formed() {
        let (port, req) = serve_once(Some(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")).await;
        probe(port, "/status?x=1").probe(T).await.unwrap();
        let req = req.await.unwrap();
        assert!(req.starts_with("GET /status?x=1 HTTP/1.1\r\n"), "{req}");
        let lower = req.to_ascii_lowercase();
        assert!(
            lower.contains(&format!("\r\nhost: 127.0.0.1:{port}\r\n")),
            "{req}"
        );
        assert!(lower.contains("\r\nconnection: close\r\n"), "{req}");
        assert!(lower.contains("\r\nuser-agent: coolmesh/"), "{req}");
    }

    #[tokio::test]
    async fn any_2xx_is_up() {
        let (port, _req) = serve_once(Some(b"HTTP/1.1 204 No Content\r\n\r\n")).await;
        probe(port, "/").probe(T).await.unwrap();
        // HTTP/1.0 server, body until close.
        let (port, _req) = serve_once(Some(b"HTTP/1.0 200 OK\r\n\r\nhello")).await;
        probe(port, "/").probe(T).await.unwrap();
    }

    #[tokio::test]
    async fn server_error_is_down() {
        let (port, _req) = serve_once(Some(
            b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\n\r\n",
        ))
        .await;
        let e = probe(port, "/").probe(T).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            "HTTP status 500 Internal Server Error (only 2xx means up)"
        );
    }

    #[tokio::test]
    async fn redirect_is_down() {
        let (port, _req) = serve_once(Some(
            b"HTTP/1.1 301 Moved Permanently\r\nLocation: /x\r\nContent-Length: 0\r\n\r\n",
        ))
        .await;
        let e = probe(port, "/").probe(T).await.unwrap_err();
        assert!(matches!(e, ProbeError::Down(_)));
        assert!(e.to_string().contains("301"), "{e}");
    }

    #[tokio::test]
    async fn garbage_is_down() {
        let (port, _req) = serve_once(Some(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")).await;
        let e = probe(port, "/").probe(T).await.unwrap_err();
        assert!(matches!(e, ProbeError::Protocol(_)), "{e:?}");
        println!("{e}");
        assert!(e.to_string().starts_with("no valid HTTP response: "), "{e}");
    }

    #[tokio::test]
    async fn close_without_answer_is_down() {
        let (port, _req) = serve_once(Some(b"")).await;
        let e = probe(port, "/").probe(T).await.unwrap_err();
        assert!(matches!(e, ProbeError::Protocol(_)), "{e:?}");
        println!("{e}");
        assert!(e.to_string().contains("closed"), "{e}");
    }

    #[tokio::test]
    async fn silent_server_times_out() {
        let (port, req) = serve_once(None).await;
        let took = times_out_at_300ms(&probe(port, "/")).await;
        assert!(
            took >= Duration::from_millis(300) && took < Duration::from_secs(2),
            "{took:?}"
        );
        assert!(req.await.is_ok(), "the request was sent");
    }

    #[tokio::test]
    async fn refused_is_down() {
        let (_refusing, port) = super::super::test_util::refused_port();
        let e = probe(port, "/").probe(T).await.unwrap_err();
        assert!(e.to_string().contains("refused"), "{e}");
    }

    #[tokio::test]
    async fn unresolvable_name_is_down() {
        let p = HttpProbe::new(
            "t",
            Host::Name("pdu.test".into()),
            80,
            "pdu.test",
            "/",
            Arc::new(FakeResolver::Fail),
        );
        let e = p.probe(T).await.unwrap_err();
        assert!(
            e.to_string().starts_with("cannot resolve pdu.test: "),
            "{e}"
        );
    }
}
