//! The wiring: builds every service once from the composed settings,
//! hands each only what it needs, binds the listeners, serves, reloads on
//! SIGHUP and shuts down in order. The one module that knows them all;
//! nothing imports it but the crate root.
//!
//! - [`Sections`]: the config sections the shared services are built from.
//! - [`Services`]: the services themselves (hub, packager, relays,
//!   transcoder, auth, stats, the stream registry) and what RTMP
//!   connections share ([`ServerContext`]).
//! - [`run_from`]: listeners, HTTP state, serving, shutdown.
//! - `reload`: how a reloaded config is applied to the services.

mod reload;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpSocket};

/// The config sections the shared services are built from.
#[derive(Clone, Debug)]
pub struct Sections {
    pub rtmp: server::Settings,
    pub srt: crate::srt::Settings,
    pub hub: hub::Settings,
    pub package: crate::package::Settings,
    pub relay: crate::egress::Settings,
    pub egress: crate::egress_policy::Settings,
    pub relays: Vec<crate::egress::StaticRelay>,
    pub source: crate::sources::Settings,
    pub sources: Vec<crate::sources::StaticSource>,
    pub auth: auth::Settings,
    pub transcoder: crate::transcode::Settings,
    pub transcode: Vec<crate::transcode::Mapping>,
    pub recorder: crate::record::Settings,
    pub record: Vec<crate::record::RecordEntry>,
    pub vod: crate::vod::Settings,
    pub webhooks: webhooks::Settings,
    pub cluster: crate::cluster::Settings,
}

impl Sections {
    pub fn of(config: &config::Config) -> Sections {
        Sections {
            rtmp: config.rtmp.clone(),
            srt: config.srt.clone(),
            hub: config.hub.clone(),
            package: config.package.clone(),
            relay: config.relay.clone(),
            egress: config.egress.clone(),
            relays: config.relays.clone(),
            source: config.source.clone(),
            sources: config.sources.clone(),
            auth: config.auth.clone(),
            transcoder: config.transcoder.clone(),
            transcode: config.transcode.clone(),
            recorder: config.recorder.clone(),
            record: config.record.clone(),
            vod: config.vod.clone(),
            webhooks: config.webhooks.clone(),
            cluster: config.cluster.clone(),
        }
    }
}

/// Every shared service, built once. Each consumer is handed the few it
/// needs: RTMP connections get [`ServerContext`], the API and `/metrics`
/// get theirs in [`run_from`], a reload gets all of them.
pub struct Services {
    pub hub: hub::Hub,
    pub packager: Packager,
    pub relays: Relays,
    pub transcoder: Transcoder,
    /// Recordings, started by the registry.
    pub recorder: crate::record::Recorder,
    pub auth: Arc<auth::Auth>,
    /// Per-publish stats read by `/metrics`.
    pub stats: metrics::Streams,
    /// What a publish starts and stops.
    pub streams: Registry,
    /// Webhook events out (the one dispatcher).
    pub events: webhooks::Webhooks,
    /// What RTMP connections share.
    pub connections: Arc<ServerContext>,
    /// `[srt]` as SRT callers are admitted (a reload replaces it).
    pub srt_settings: Arc<std::sync::RwLock<crate::srt::Settings>>,
    /// The SRT listener's connections.
    pub srt_sessions: crate::srt::SrtSessions,
    /// Pulled sources.
    pub sources: crate::sources::Sources,
    /// The files played on demand.
    pub vod: Arc<crate::vod::Library>,
    /// Stream ownership across nodes (`[cluster]`); `None`: a single node.
    pub cluster: Option<crate::cluster::Cluster>,
}

impl Services {
    /// Relay tasks and transcode jobs run on the runtime current at this
    /// call.
    pub fn build(config: Sections, shutdown: Shutdown) -> Services {
        let events = webhooks::Webhooks::default();
        events.configure(&config.webhooks);
        let hub = hub::Hub::new(config.hub.hub_config(config.rtmp.publish_conflict));
        let packager_config = config.package.packager_config();
        if let Some(dir) = &packager_config.dvr_dir {
            // Before any publish: every session found there is over.
            let deleted = crate::package::dvr::clean_stale(dir);
            if deleted > 0 {
                tracing::info!(
                    dir = %dir.display(),
                    deleted,
                    "DVR segments a previous run left were deleted"
                );
            }
        }
        let store = Store::new(config.package.hold_limits());
        store.memory().set_budget(config.package.memory_budget());
        let packager = Packager::new(hub.clone(), store, packager_config);
        let relays = Relays::new(
            hub.clone(),
            relay_settings(&config),
            static_rules(&config),
            events.clone(),
        );
        let (transcode_rules, profiles) = transcode_plan(&config);
        let transcoder = Transcoder::new(
            hub.clone(),
            packager.clone(),
            config.transcoder.transcode_settings(config.package.grace),
            transcode_rules,
            profiles,
            shutdown.clone(),
            events.clone(),
        );
        let recorder = crate::record::Recorder::new(
            &config.recorder,
            crate::record::rules(&config.record).unwrap_or_else(|e| {
                tracing::warn!("recordings not started: {e}");
                Vec::new()
            }),
            events.clone(),
        )
        .with_vod(&config.vod.app, &config.vod.dir);
        let stats = metrics::Streams::default();
        let cluster = crate::cluster::Cluster::new(&config.cluster);
        let streams = Registry::new(
            hub.clone(),
            packager.clone(),
            relays.clone(),
            recorder.clone(),
            stats.clone(),
            events.clone(),
        )
        .with_cluster(cluster.clone());
        streams.add_hook(Arc::new(transcoder.clone()));
        let auth = Arc::new(auth::Auth::new(auth_policy(&config.auth)));
        let sources = crate::sources::Sources::new(
            crate::sources::Deps {
                hub: hub.clone(),
                registry: streams.clone(),
                relays: relays.clone(),
                events: events.clone(),
                shutdown: shutdown.clone(),
            },
            config.source.clone(),
            &config.sources,
        );
        let vod = crate::vod::Library::new(config.vod);
        let connections = ServerContext::new(
            hub.clone(),
            streams.clone(),
            Arc::clone(&auth),
            config.rtmp,
            shutdown,
            Arc::clone(&vod),
        );
        let srt_settings = Arc::new(std::sync::RwLock::new(config.srt));
        Services {
            hub,
            packager,
            relays,
            transcoder,
            recorder,
            auth,
            stats,
            streams,
            events,
            connections,
            srt_settings,
            srt_sessions: Default::default(),
            sources,
            vod,
            cluster,
        }
    }
}

/// The auth policy. It was checked when loaded; a keys file gone since
/// then fails closed.
fn auth_policy(config: &auth::Settings) -> auth::Policy {
    config.policy().unwrap_or_else(|e| {
        tracing::error!("auth: {e}; publishing and playing are refused until a reload fixes it");
        let mut deny = config.clone();
        deny.publish = auth::AuthMode::Keys;
        deny.play = auth::AuthMode::Keys;
        deny.keys_file.clear();
        deny.publish_keys.clear();
        deny.play_keys.clear();
        deny.webhook_url.clear();
        deny.policy()
            .unwrap_or_else(|_| unreachable!("a keys-only policy always checks"))
    })
}

/// The `[[relays]]` rules. The config was checked when loaded; an entry
/// that no longer checks (a CA file removed since) is left out, and said so.
fn static_rules(config: &Sections) -> Vec<crate::egress::StaticRule> {
    crate::egress::static_rules(&config.relays).unwrap_or_else(|e| {
        tracing::warn!("static relays not started: {e}");
        Vec::new()
    })
}

/// Relay settings with the egress policy. A policy that no longer builds
/// refuses everything rather than nothing.
fn relay_settings(config: &Sections) -> crate::egress::RelaySettings {
    let egress = config.egress.policy().unwrap_or_else(|e| {
        tracing::warn!("{e}: API relays refused");
        crate::egress_policy::EgressPolicy::closed()
    });
    config
        .relay
        .relay_settings(config.package.grace, Arc::new(egress))
}

/// Transcode mappings and profiles. Checked when loaded too; a profile
/// file broken since is said so.
fn transcode_plan(config: &Sections) -> (Vec<crate::transcode::Rule>, crate::transcode::Profiles) {
    let (profiles, rules) = config
        .transcoder
        .plan(&config.transcode)
        .unwrap_or_else(|e| {
            tracing::warn!("transcoding off: {e}");
            Default::default()
        });
    (rules, profiles)
}

/// Connections the kernel queues before castgate accepts them. The usual
/// default (128, from std and mio) drops SYNs as soon as a few hundred
/// clients connect at once (encoders reconnecting after a network blip, a
/// player rush), and each dropped one waits a second or more to retry.
const LISTEN_BACKLOG: u32 = 1024;

/// A listener with [`LISTEN_BACKLOG`] (and SO_REUSEADDR, as std sets it).
fn listen_with_backlog(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    #[cfg(unix)]
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

use crate::egress::Relays;
use crate::package::service::{Packager, Store};
use crate::server::ServerContext;
use crate::shutdown::Shutdown;
use crate::streams::Registry;
use crate::transcode::Transcoder;
use crate::transport::tls::CertStore;
use crate::{
    api, auth, config, http, hub, lifecycle, metrics, server, shutdown, transport, viewers,
    webhooks,
};

async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    listen_with_backlog(addr).map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen for {what} on {addr}: {e}"))
    })
}

fn load_certs(what: &str, files: transport::TlsFiles) -> std::io::Result<Arc<CertStore>> {
    let store = CertStore::load(files).map_err(|e| {
        std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{what}: {e}"))
    })?;
    tracing::info!(
        what,
        cert = %store.files().cert.display(),
        sha256 = store.fingerprint(),
        "TLS certificate loaded"
    );
    Ok(store)
}

/// Runs `f` if there is one, else never finishes (an optional listener).
async fn maybe<F: Future>(f: Option<F>) -> F::Output {
    match f {
        Some(f) => f.await,
        None => std::future::pending().await,
    }
}

/// Binds every listener, then serves until the process is told to stop.
/// Bind errors (naming the address) and certificate errors (naming the
/// file) are returned before anything runs.
pub async fn run(config: config::Config) -> std::io::Result<()> {
    run_from(config, None).await
}

/// [`run`], with the config file SIGHUP re-reads (`None`: defaults and the
/// environment only).
pub async fn run_from(
    config: config::Config,
    config_path: Option<std::path::PathBuf>,
) -> std::io::Result<()> {
    transport::tls::install_crypto_provider();
    // Before any listener: every connection the caps allow needs a descriptor.
    let wanted = (config.rtmp.max_connections
        + config.http.max_connections
        + config.srt.max_connections) as u64
        + 256;
    crate::limits::log_open_files(&crate::limits::raise_open_files(), wanted);
    let (hangup, stop_signals) = lifecycle::signals();
    let rtmps_store = config
        .rtmps_tls()
        .map(|f| load_certs("RTMPS", f))
        .transpose()?;
    let https_store = match (config.https_tls(), &rtmps_store) {
        (None, _) => None,
        (Some(f), Some(shared)) if *shared.files() == f => Some(Arc::clone(shared)),
        (Some(f), _) => Some(load_certs("HTTPS", f)?),
    };
    let listener = bind(config.rtmp.listen, "RTMP").await?;
    let http_listener = bind(config.http.listen, "HTTP").await?;
    let rtmps_listener = match &rtmps_store {
        Some(_) => Some(bind(config.rtmps.listen, "RTMPS").await?),
        None => None,
    };
    let https_listener = match &https_store {
        Some(_) => Some(bind(config.https.listen, "HTTPS").await?),
        None => None,
    };
    let workers = transport::pool::start(config.rtmp.workers)?;
    tracing::info!(listen = %listener.local_addr()?, workers, "RTMP listening");
    tracing::info!(listen = %http_listener.local_addr()?, "HTTP listening");
    if let Some(l) = &rtmps_listener {
        tracing::info!(listen = %l.local_addr()?, "RTMPS listening");
    }
    if let Some(l) = &https_listener {
        tracing::info!(listen = %l.local_addr()?, http2 = true, "HTTPS listening");
    }
    let max_connections = config.rtmp.max_connections;
    let max_per_ip = config.rtmp.max_connections_per_ip;
    let http_limits = config.http.limits(config.rtmp.handshake_timeout);
    let body_budget_bytes = config.http.body_budget_bytes;
    let viewer_limits = config.http.viewer_limits();
    let max_streams = config.metrics.max_streams;
    let rtmpt = config.rtmpt.enabled.then(|| config.rtmpt.clone());
    let api_config = config.api.clone();
    for warning in
        open_listener_warnings(&config, rtmps_listener.is_some(), https_listener.is_some())
    {
        tracing::warn!("{warning}");
    }
    for warning in config.warnings() {
        tracing::warn!("{warning}");
    }
    if config.auth.play == auth::AuthMode::Open && !auth::is_loopback(config.rtmp.listen) {
        tracing::info!(listen = %config.rtmp.listen, "auth.play = \"open\": anyone may play over RTMP");
    }
    let lifecycle_config = config.lifecycle.clone();
    let metrics_on = config.metrics.enabled;
    if metrics_on {
        metrics::handle();
    }
    let (stop_trigger, shutdown) = shutdown::shutdown_pair();
    let current_config = config.clone();
    let services = Arc::new(Services::build(Sections::of(&config), shutdown));
    let ctx = Arc::clone(&services.connections);
    // Recording retention ([recorder] retention_*): a pass now, then every
    // minute and whenever a recording file closes.
    tokio::spawn(services.recorder.clone().run_sweeper(ctx.shutdown.clone()));
    // Cluster leases and this node's liveness key, renewed in Redis.
    if let Some(cluster) = services.cluster.clone() {
        tokio::spawn(cluster.run_renewals(ctx.shutdown.clone()));
    }
    // Streams other nodes own: HLS/DASH forwarded, players fed by a pull.
    let edge = services
        .cluster
        .clone()
        .map(|c| crate::edge::Edge::new(c, services.hub.clone()));
    if let Some(edge) = edge.clone() {
        let vod_app = (!config.vod.dir.is_empty()).then(|| config.vod.app.clone());
        tokio::spawn(crate::edge::replica::run(
            edge,
            services.hub.clone(),
            services.sources.clone(),
            vod_app,
            ctx.shutdown.clone(),
        ));
    }
    let srt = if config.srt.enabled {
        let deps = crate::srt::Deps {
            registry: services.streams.clone(),
            hub: services.hub.clone(),
            auth: Arc::clone(&services.auth),
            shutdown: ctx.shutdown.clone(),
            on_demand: Some({
                let sources = services.sources.clone();
                let edge = edge.clone();
                let rt = tokio::runtime::Handle::current();
                Arc::new(move |stream: &str| {
                    sources.on_demand(stream)
                        || edge
                            .as_ref()
                            .is_some_and(|e| e.owned_elsewhere_blocking(stream, &rt))
                })
            }),
        };
        let l = crate::srt::start(
            Arc::clone(&services.srt_settings),
            services.srt_sessions.clone(),
            deps,
        )?;
        tracing::info!(listen = %l.local_addr(), "SRT listening");
        Some(l)
    } else {
        None
    };
    let rtmfp = if config.rtmfp.enabled {
        let socket = transport::rtmfp::bind(&config.rtmfp).await.map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!("RTMFP: cannot bind UDP {}: {e}", config.rtmfp.listen),
            )
        })?;
        let addr = socket.local_addr()?;
        tracing::info!(listen = %addr, "RTMFP listening (UDP)");
        let task = tokio::spawn(transport::rtmfp::serve(
            socket,
            Arc::new(config.rtmfp.clone()),
            server::handler(Arc::clone(&ctx)),
        ));
        Some((addr, AbortOnDrop(task)))
    } else {
        None
    };
    // API relays into castgate itself are refused (egress policy).
    let own: Vec<std::net::SocketAddr> = [Some(&listener), Some(&http_listener)]
        .into_iter()
        .chain([rtmps_listener.as_ref(), https_listener.as_ref()])
        .flatten()
        .filter_map(|l| l.local_addr().ok())
        .chain(srt.as_ref().map(|l| l.local_addr()))
        .chain(rtmfp.as_ref().map(|(addr, _)| *addr))
        .collect();
    services.relays.set_own_listeners(own);
    let ready = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let viewers = viewers::Viewers::new(viewer_limits);
    if let Some(cluster) = &services.cluster {
        // The load other nodes and the console see: players and HTTP viewers.
        let (hub, viewers) = (services.hub.clone(), viewers.clone());
        cluster.set_load(move || {
            let players: usize = hub.streams().iter().map(|s| s.subscribers).sum();
            // Expired viewers leave the count here too, not only when
            // /metrics is scraped.
            viewers.sweep(std::time::Instant::now());
            (players + viewers.tracked()) as u64
        });
    }
    let tunnels = rtmpt.map(|c| {
        let handler = server::handler(Arc::clone(&ctx));
        transport::rtmpt::Tunnels::new(handler, c, body_budget_bytes)
    });
    let api = api_config.enabled.then(|| {
        let token = api_config.token();
        match &token {
            Some(_) => tracing::info!(
                path = api::PREFIX,
                "REST API on: every call needs Authorization: Bearer <api.token>"
            ),
            None => tracing::info!(
                path = api::PREFIX,
                "REST API on: no api.token set, answering loopback clients only"
            ),
        }
        Arc::new(api::ApiState {
            hub: services.hub.clone(),
            relays: services.relays.clone(),
            token,
            max_body_bytes: api_config.max_body_bytes,
            transcoder: Some(services.transcoder.clone()),
            viewers: viewers.clone(),
            srt: services.srt_sessions.clone(),
            sources: Some(services.sources.clone()),
            recorder: Some(services.recorder.clone()),
            edge: edge.clone(),
            store: Some(services.packager.store().clone()),
        })
    });
    let state = http::HttpState {
        tunnels,
        api,
        auth: Some(Arc::clone(&services.auth)),
        ready: Arc::clone(&ready),
        metrics: metrics_on.then(|| {
            Arc::new(metrics::Sources {
                hub: services.hub.clone(),
                streams: services.stats.clone(),
                relays: services.relays.clone(),
                max_streams,
                viewers: viewers.clone(),
                events: services.events.clone(),
                extra: vec![
                    Arc::new(services.srt_sessions.clone()),
                    Arc::new(services.packager.store().clone()),
                ],
            })
        }),
        access_token: api_config.token().map(Arc::from),
        viewers,
        wake: Some({
            let sources = services.sources.clone();
            Arc::new(move |stream: &str| sources.touch(stream))
        }),
        vod: Some(Arc::clone(&services.vod)),
        edge: edge.clone(),
        ..http::HttpState::new(services.packager.store().clone())
    };
    let app = http::router(state.clone());
    let http = transport::http::serve(transport::http::plain(http_listener, http_limits), app);
    let https = match (https_listener, &https_store) {
        (Some(l), Some(store)) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(transport::tls::server_config(
                Arc::clone(store),
                transport::tls::HTTP_ALPN,
            ));
            let app = http::router(http::HttpState {
                tunnel_proto: "rtmpts",
                scheme: "https",
                ..state
            });
            Some(transport::http::serve(
                transport::http::tls(l, acceptor, http_limits),
                app,
            ))
        }
        _ => None,
    };
    let rtmps = match (rtmps_listener, &rtmps_store) {
        (Some(l), Some(store)) => Some(transport::tls::serve_rtmps(
            l,
            Arc::clone(store),
            transport::tcp::Limits {
                max_connections,
                max_per_ip,
            },
            ctx.rtmp().handshake_timeout,
            server::handler(Arc::clone(&ctx)),
        )),
        _ => None,
    };
    // One reload per distinct certificate.
    let mut stores: Vec<(&'static str, Arc<CertStore>)> = Vec::new();
    match (&rtmps_store, https_store) {
        (Some(r), Some(h)) if Arc::ptr_eq(r, &h) => stores.push(("RTMPS and HTTPS", h)),
        (r, h) => {
            stores.extend(r.as_ref().map(|r| ("RTMPS", Arc::clone(r))));
            stores.extend(h.map(|h| ("HTTPS", h)));
        }
    }
    let reloader = lifecycle::Reloader {
        path: config_path,
        services: Arc::clone(&services),
        certs: stores,
        current: current_config,
    };
    let conn_ctx = Arc::clone(&ctx);
    let rtmp = transport::tcp::serve(
        listener,
        transport::tcp::Limits {
            max_connections,
            max_per_ip,
        },
        move |socket, peer| server::serve_tcp_connection(socket, peer, Arc::clone(&conn_ctx)),
    );
    // The HTTP servers outlive the RTMP listeners at shutdown (players
    // fetch the ended playlists), so they are polled in both phases.
    let mut http = std::pin::pin!(http);
    let mut https = std::pin::pin!(maybe(https));
    let rtmp_side = async {
        tokio::select! {
            _ = rtmp => {}
            _ = maybe(rtmps) => {}
        }
    };
    ready.store(true, std::sync::atomic::Ordering::Relaxed);
    let signal = tokio::select! {
        _ = rtmp_side => None,
        () = &mut http => {
            tracing::error!("HTTP server stopped");
            None
        }
        () = &mut https => {
            tracing::error!("HTTPS server stopped");
            None
        }
        _ = lifecycle::reload_on_hangup(hangup, reloader) => None,
        s = lifecycle::stop_signal(stop_signals) => Some(s),
    };
    ready.store(false, std::sync::atomic::Ordering::Relaxed);
    let Some(signal) = signal else {
        return Ok(());
    };
    let limit = lifecycle_config.shutdown_timeout;
    drop(srt);
    drop(rtmfp);
    tracing::info!(signal, timeout = ?limit, "shutting down: RTMP, SRT and RTMFP listeners closed");
    let stop = async {
        stop_trigger.trigger();
        // Publishers end (their segments close), then the playlists are
        // marked ended at once instead of after the grace period.
        let deadline = tokio::time::Instant::now() + limit.mul_f64(0.5);
        while services.hub.streams().iter().any(|s| s.publisher.is_some())
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let ended = services.packager.end_all();
        let relays = services.relays.stop_all();
        let sources = services.sources.stop_all();
        tracing::info!(
            streams_ended = ended,
            relays_stopped = relays,
            sources_stopped = sources,
            "shutting down: streams ended"
        );
        services.events.flush(limit.mul_f64(0.25)).await;
        tracing::info!(drain = ?lifecycle_config.drain, "shutting down: draining HTTP");
        tokio::time::sleep(lifecycle_config.drain).await;
    };
    let stopped = async {
        tokio::select! {
            _ = stop => true,
            _ = &mut http => false,
        }
    };
    match tokio::time::timeout(limit, stopped).await {
        Ok(_) => tracing::info!("shut down cleanly"),
        Err(_) => tracing::warn!(timeout = ?limit, "shutdown timeout reached: exiting anyway"),
    }
    Ok(())
}

/// One warning for every listener that takes publishes from beyond this
/// machine while `auth.publish` is open (RTMP, RTMPS, RTMPT/RTMPTS on
/// the HTTP/HTTPS ports, and SRT): anyone who reaches it may publish, and, with
/// takeover, replace a live stream's publisher.
fn open_listener_warnings(config: &config::Config, rtmps_on: bool, https_on: bool) -> Vec<String> {
    if config.auth.publish != auth::AuthMode::Open {
        return Vec::new();
    }
    let rtmpt = config.rtmpt.enabled;
    let listeners = [
        ("RTMP", config.rtmp.listen, true),
        ("RTMPS", config.rtmps.listen, rtmps_on),
        ("RTMPT", config.http.listen, rtmpt),
        ("RTMPTS", config.https.listen, https_on && rtmpt),
        ("SRT", config.srt.listen, config.srt.enabled),
    ];
    let takeover = match config.rtmp.publish_conflict {
        hub::PublishConflict::Takeover => {
            ", and replace the publisher of any live stream (rtmp.publish_conflict = \"takeover\")"
        }
        hub::PublishConflict::Reject => "",
    };
    listeners
        .into_iter()
        .filter(|(_, addr, on)| *on && !auth::is_loopback(*addr))
        .map(|(proto, addr, _)| {
            format!(
                "auth.publish = \"open\": ANYONE who can reach {proto} on {addr} may publish{takeover}; \
                 set auth.publish to \"keys\" or \"webhook\""
            )
        })
        .collect()
}

/// A spawned task that ends when its handle is dropped (a listener that
/// stops taking new sessions at shutdown).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listener_open_to_publishers_is_warned_about() {
        let mut c = config::Config::load(None).unwrap();
        c.rtmp.listen = "0.0.0.0:1935".parse().unwrap();
        c.rtmps.listen = "0.0.0.0:1936".parse().unwrap();
        c.http.listen = "0.0.0.0:8080".parse().unwrap();
        c.https.listen = "127.0.0.1:8443".parse().unwrap();
        c.srt.listen = "0.0.0.0:8890".parse().unwrap();
        let w = open_listener_warnings(&c, true, true);
        assert_eq!(w.len(), 4, "{w:#?}");
        for (proto, addr) in [
            ("RTMP", "0.0.0.0:1935"),
            ("RTMPS", "0.0.0.0:1936"),
            ("RTMPT", "0.0.0.0:8080"),
            ("SRT", "0.0.0.0:8890"),
        ] {
            assert!(
                w.iter()
                    .any(|l| l.contains(&format!("reach {proto} on {addr}"))
                        && l.contains("takeover")),
                "{proto}: {w:#?}"
            );
        }
        // RTMPS off: not listed; takeover off: not claimed.
        c.rtmp.publish_conflict = hub::PublishConflict::Reject;
        let w = open_listener_warnings(&c, false, true);
        assert_eq!(w.len(), 3, "{w:#?}");
        assert!(w.iter().all(|l| !l.contains("takeover")));
        // SRT off: not listed.
        c.srt.enabled = false;
        assert_eq!(open_listener_warnings(&c, false, true).len(), 2);
        // Keys: nothing to warn about.
        c.auth.publish = auth::AuthMode::Keys;
        assert!(open_listener_warnings(&c, true, true).is_empty());
    }
}
