//! The accept loop and one connection: admission through the connection
//! table, the first-byte and TLS deadlines, and hyper serving the routes.

use super::*;

/// Serve until `shutdown` completes, then let requests in progress finish
/// for `limits.shutdown_grace`.
pub async fn serve(
    listener: TcpListener,
    app: Arc<App>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    let limits = app.limits.clone();
    let table = ConnTable::new(
        limits.max_connections,
        limits.max_connections_per_ip,
        app.metrics.http.clone(),
    );
    // 0: serving; 1: finish requests in progress, close idle connections.
    // The sender dropped: close everything now.
    let (stop_tx, stop_rx) = watch::channel(0u8);
    // Every connection task holds a sender: `recv` returns `None` when all
    // of them have ended.
    let (done_tx, mut done_rx) = mpsc::channel::<()>(1);
    let tls = app
        .web
        .as_ref()
        .and_then(|w| w.tls())
        .map(tokio_rustls::TlsAcceptor::from);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let admitted = match table.admit(peer.ip(), Instant::now(), &limits) {
            Ok(a) => a,
            Err(reason) => {
                tracing::debug!(%peer, reason = reason.label(), "connection limit reached; closing");
                drop(stream);
                continue;
            }
        };
        if let Some(reason) = admitted.evicted {
            tracing::debug!(%peer, reason = reason.label(), "evicted a waiting connection");
        }
        let _ = stream.set_nodelay(true);
        tokio::spawn(conn_task(
            GuardedIo::new(stream, admitted.conn.clone()),
            admitted.conn,
            peer,
            app.clone(),
            tls.clone(),
            stop_rx.clone(),
            done_tx.clone(),
        ));
    }
    drop(listener);
    let _ = stop_tx.send(1);
    drop(done_tx);
    let _ = tokio::time::timeout(limits.shutdown_grace, done_rx.recv()).await;
    drop(stop_tx);
    Ok(())
}

/// One connection from accept to close: TLS handshake (if any), then HTTP
/// under the deadlines and eviction of [`conn`].
pub(super) async fn conn_task(
    io: GuardedIo,
    conn: Arc<ConnState>,
    peer: std::net::SocketAddr,
    app: Arc<App>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut stop: watch::Receiver<u8>,
    _done: mpsc::Sender<()>,
) {
    let Some(acceptor) = tls else {
        serve_conn(io, conn, app, peer, stop).await;
        return;
    };
    let limits = &app.limits;
    let hs_deadline =
        conn.accepted_at() + limits.tls_handshake_timeout.min(limits.header_read_timeout);
    let metrics = app.metrics.http.clone();
    let stream = tokio::select! {
        s = tls_accept(&acceptor, io) => s,
        _ = tokio::time::sleep_until(hs_deadline) => {
            metrics.timed_out(Phase::TlsHandshake);
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
        _ = first_byte_missed(&conn) => {
            metrics.timed_out(Phase::FirstByte);
            None
        }
        _ = conn.evicted() => None,
        _ = stop.changed() => None,
    };
    if let Some(s) = stream {
        serve_conn(s, conn, app, peer, stop).await;
    }
}

/// Resolves when the first-byte deadline passes with nothing received.
pub(super) async fn first_byte_missed(conn: &ConnState) {
    let (deadline, phase) = conn.deadline();
    if phase == Phase::FirstByte {
        tokio::time::sleep_until(deadline).await;
        if conn.deadline().1 == Phase::FirstByte {
            return;
        }
    }
    std::future::pending::<()>().await
}

/// Serve HTTP/1.1 on one accepted (and, with TLS, handshaken) connection
/// until it closes, a deadline passes, it is evicted while waiting, or the
/// server stops.
pub(super) async fn serve_conn<I>(
    io: I,
    conn: Arc<ConnState>,
    app: Arc<App>,
    peer: std::net::SocketAddr,
    mut stop: watch::Receiver<u8>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let metrics = app.metrics.http.clone();
    let limits = app.limits.clone();
    let svc_conn = conn.clone();
    let svc = hyper::service::service_fn(move |req| {
        // Called as soon as the head is parsed: busy from here on.
        svc_conn.request_started();
        let app = app.clone();
        let c = svc_conn.clone();
        async move {
            let resp = respond(app, req).await;
            Ok::<_, std::convert::Infallible>(resp.map(|b| TrackedBody::new(b, c)))
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Our own deadlines (conn.rs) replace hyper's: its timer restarts
        // for every request and also runs while a kept-alive connection idles.
        .header_read_timeout(None)
        .max_buf_size(limits.max_header_bytes.max(8192));
    let http = builder.serve_connection(TokioIo::new(io), svc);
    tokio::pin!(http);
    let mut closing = false;
    loop {
        let (deadline, _) = conn.deadline();
        tokio::select! {
            r = http.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection error");
                }
                return;
            }
            _ = tokio::time::sleep_until(deadline) => {
                let (deadline, phase) = conn.deadline();
                if Instant::now() >= deadline {
                    metrics.timed_out(phase);
                    tracing::debug!(%peer, phase = phase.label(), "connection timed out");
                    return;
                }
            }
            _ = conn.changed() => {}
            _ = conn.evicted(), if !closing => {
                if !conn.busy() {
                    return;
                }
                // Chosen while waiting, but a request started since: finish
                // it, then close.
                closing = true;
                http.as_mut().graceful_shutdown();
            }
            r = stop.changed() => {
                if r.is_err() || !conn.busy() {
                    return;
                }
                if !closing {
                    closing = true;
                    http.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// TLS handshake on a fresh connection. A client speaking plain HTTP to the
/// TLS port gets Go's 400 answer (what node_exporter says), so the mistake
/// is obvious from curl; anything else that is not TLS is just closed.
pub(super) async fn tls_accept(
    acceptor: &tokio_rustls::TlsAcceptor,
    stream: GuardedIo,
) -> Option<tokio_rustls::server::TlsStream<GuardedIo>> {
    let mut first = [0u8; 1];
    // 0x16: TLS handshake record. Peeking leaves the byte for rustls.
    match stream.peek(&mut first).await {
        Ok(1) if first[0] != 0x16 => {
            if first[0].is_ascii_uppercase() {
                let mut stream = stream;
                let head = format!(
                    "HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    PLAIN_HTTP_ON_TLS.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&PLAIN_HTTP_ON_TLS).await;
                let _ = stream.shutdown().await;
            }
            return None;
        }
        Ok(1) => {}
        _ => return None,
    }
    match acceptor.accept(stream).await {
        Ok(s) => Some(s),
        Err(e) => {
            // Wrong CA, missing client certificate, version mismatch: the
            // client's problem, logged for the operator at debug.
            tracing::debug!(error = %e, "TLS handshake failed");
            None
        }
    }
}
