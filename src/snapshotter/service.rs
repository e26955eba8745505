//! The gRPC face: containerd's `containerd.services.snapshots.v1.Snapshots`
//! service on a unix socket, as a containerd `proxy_plugins` entry of type
//! `snapshot` calls it. Each call runs the synchronous snapshotter on
//! tokio's blocking pool, one call at a time (the store has one SQLite
//! connection); errors travel as containerd's gRPC codes. tokio stays in
//! this file: the rest of strata is synchronous.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use tokio_stream::Stream;
use tonic::{Request, Response, Status};

use super::mounts::Mount;
use super::proto::snapshots::snapshots_server::{Snapshots, SnapshotsServer};
use super::proto::snapshots::*;
use super::proto::types;
use super::records::Kind as RecordKind;
use super::snapshots::{Info as SnapshotInfo, Snapshotter};
use super::SnapshotterError;

/// How many infos one List message carries.
const LIST_BATCH: usize = 100;

struct Service {
    inner: Arc<Mutex<Snapshotter>>,
    root: PathBuf,
}

fn to_status(e: SnapshotterError) -> Status {
    Status::new(e.code(), e.to_string())
}

fn labels_in(labels: HashMap<String, String>) -> BTreeMap<String, String> {
    labels.into_iter().collect()
}

fn mounts_out(mounts: Vec<Mount>) -> Vec<types::Mount> {
    mounts
        .into_iter()
        .map(|m| types::Mount {
            r#type: m.kind,
            source: m.source.to_string_lossy().into_owned(),
            options: m.options,
            ..Default::default()
        })
        .collect()
}

fn timestamp(ns: i64) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: ns.div_euclid(1_000_000_000),
        nanos: ns.rem_euclid(1_000_000_000) as i32,
    }
}

fn info_out(info: SnapshotInfo) -> Info {
    Info {
        name: info.name,
        parent: info.parent,
        kind: match info.kind {
            RecordKind::View => Kind::View,
            RecordKind::Active => Kind::Active,
            RecordKind::Committed => Kind::Committed,
        } as i32,
        created_at: Some(timestamp(info.created_ns)),
        updated_at: Some(timestamp(info.updated_ns)),
        labels: info.labels.into_iter().collect(),
    }
}

impl Service {
    /// Runs `op` on the snapshotter from tokio's blocking pool.
    async fn call<T: Send + 'static>(
        &self,
        op: impl FnOnce(&mut Snapshotter) -> Result<T, SnapshotterError> + Send + 'static,
    ) -> Result<T, Status> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut snapshotter = inner.lock().unwrap_or_else(|p| p.into_inner());
            op(&mut snapshotter)
        })
        .await
        .map_err(|e| Status::internal(format!("snapshotter task: {e}")))?
        .map_err(to_status)
    }
}

type ListStream = Pin<Box<dyn Stream<Item = Result<ListSnapshotsResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Snapshots for Service {
    async fn prepare(
        &self,
        request: Request<PrepareSnapshotRequest>,
    ) -> Result<Response<PrepareSnapshotResponse>, Status> {
        let r = request.into_inner();
        let labels = labels_in(r.labels);
        let mounts = self
            .call(move |s| s.prepare_or_fetch(&r.key, &r.parent, &labels))
            .await?;
        Ok(Response::new(PrepareSnapshotResponse {
            mounts: mounts_out(mounts),
        }))
    }

    async fn view(
        &self,
        request: Request<ViewSnapshotRequest>,
    ) -> Result<Response<ViewSnapshotResponse>, Status> {
        let r = request.into_inner();
        let labels = labels_in(r.labels);
        let mounts = self
            .call(move |s| s.view(&r.key, &r.parent, &labels))
            .await?;
        Ok(Response::new(ViewSnapshotResponse {
            mounts: mounts_out(mounts),
        }))
    }

    async fn mounts(
        &self,
        request: Request<MountsRequest>,
    ) -> Result<Response<MountsResponse>, Status> {
        let key = request.into_inner().key;
        let mounts = self.call(move |s| s.mounts(&key)).await?;
        Ok(Response::new(MountsResponse {
            mounts: mounts_out(mounts),
        }))
    }

    async fn commit(
        &self,
        request: Request<CommitSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let r = request.into_inner();
        let labels = labels_in(r.labels);
        self.call(move |s| s.commit(&r.name, &r.key, &labels))
            .await?;
        Ok(Response::new(()))
    }

    async fn remove(
        &self,
        request: Request<RemoveSnapshotRequest>,
    ) -> Result<Response<()>, Status> {
        let key = request.into_inner().key;
        self.call(move |s| s.remove(&key)).await?;
        Ok(Response::new(()))
    }

    async fn stat(
        &self,
        request: Request<StatSnapshotRequest>,
    ) -> Result<Response<StatSnapshotResponse>, Status> {
        let key = request.into_inner().key;
        let info = self.call(move |s| s.stat(&key)).await?;
        Ok(Response::new(StatSnapshotResponse {
            info: Some(info_out(info)),
        }))
    }

    async fn update(
        &self,
        request: Request<UpdateSnapshotRequest>,
    ) -> Result<Response<UpdateSnapshotResponse>, Status> {
        let r = request.into_inner();
        let info = r
            .info
            .ok_or_else(|| Status::invalid_argument("update: no snapshot info"))?;
        let wanted = SnapshotInfo {
            name: info.name,
            parent: info.parent,
            kind: RecordKind::from_code(info.kind as i64).unwrap_or(RecordKind::View),
            labels: labels_in(info.labels),
            created_ns: 0,
            updated_ns: 0,
        };
        let paths = r.update_mask.map(|m| m.paths).unwrap_or_default();
        let updated = self.call(move |s| s.update(&wanted, &paths)).await?;
        Ok(Response::new(UpdateSnapshotResponse {
            info: Some(info_out(updated)),
        }))
    }

    type ListStream = ListStream;

    async fn list(
        &self,
        request: Request<ListSnapshotsRequest>,
    ) -> Result<Response<Self::ListStream>, Status> {
        let filters = request.into_inner().filters;
        let infos = self.call(move |s| s.walk(&filters)).await?;
        let mut batches = Vec::new();
        let mut infos = infos.into_iter().map(info_out).peekable();
        while infos.peek().is_some() {
            batches.push(Ok(ListSnapshotsResponse {
                info: infos.by_ref().take(LIST_BATCH).collect(),
            }));
        }
        Ok(Response::new(Box::pin(tokio_stream::iter(batches))))
    }

    async fn usage(
        &self,
        request: Request<UsageRequest>,
    ) -> Result<Response<UsageResponse>, Status> {
        let key = request.into_inner().key;
        let usage = self.call(move |s| s.usage(&key)).await?;
        Ok(Response::new(UsageResponse {
            size: usage.size,
            inodes: usage.inodes,
        }))
    }

    async fn cleanup(&self, _request: Request<CleanupRequest>) -> Result<Response<()>, Status> {
        let inner = self.inner.clone();
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || cleanup(&inner, &root))
            .await
            .map_err(|e| Status::internal(format!("cleanup task: {e}")))?
            .map_err(to_status)?;
        Ok(Response::new(()))
    }
}

/// Removes snapshot directories no record names, then collects the
/// store's garbage (removed snapshots' layers, stale staging). gc waits for
/// ingests, so it runs on a connection of its own, without the
/// snapshotter's lock: other calls go on meanwhile.
fn cleanup(inner: &Mutex<Snapshotter>, root: &Path) -> Result<(), SnapshotterError> {
    inner
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .cleanup_directories()?;
    let store = crate::store::Store::open(root)?;
    crate::store::collect_garbage(&store)?;
    Ok(())
}

/// Serves the snapshotter of the store at `root` on the unix socket
/// `address` until SIGTERM or SIGINT; removes the socket then. Refuses a
/// socket another process still answers on.
pub fn serve(root: &Path, address: &Path) -> Result<(), SnapshotterError> {
    let snapshotter = Snapshotter::open(root)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| SnapshotterError::io(address, e))?;
    let service = Service {
        inner: Arc::new(Mutex::new(snapshotter)),
        root: root.to_path_buf(),
    };
    let result = runtime.block_on(async move {
        let listener = bind(address)?;
        tracing::info!("serving containerd snapshots on {}", address.display());
        // What a killed predecessor left (staging, directories of removed
        // snapshots) goes now, beside the first calls.
        let inner = service.inner.clone();
        let gc_root = service.root.clone();
        tokio::task::spawn_blocking(move || {
            if let Err(e) = cleanup(&inner, &gc_root) {
                tracing::warn!("cleanup at start: {e}");
            }
        });
        let incoming = tokio_stream::wrappers::UnixListenerStream::new(listener);
        tonic::transport::Server::builder()
            .add_service(SnapshotsServer::new(service))
            .serve_with_incoming_shutdown(incoming, shutdown())
            .await
            .map_err(|e| SnapshotterError::io(address, std::io::Error::other(e)))
    });
    let _ = std::fs::remove_file(address);
    result
}

/// Listens on `address`, a socket only its owner may connect to (mode
/// 0600, whatever the umask: whoever connects may remove every snapshot),
/// making its directory (0711) if there is none.
fn bind(address: &Path) -> Result<tokio::net::UnixListener, SnapshotterError> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = address.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(dir)
            .map_err(|e| SnapshotterError::io(dir, e))?;
    }
    if address.exists() {
        if std::os::unix::net::UnixStream::connect(address).is_ok() {
            return Err(SnapshotterError::io(
                address,
                std::io::Error::new(
                    std::io::ErrorKind::AddrInUse,
                    "another snapshotter is serving on this socket",
                ),
            ));
        }
        std::fs::remove_file(address).map_err(|e| SnapshotterError::io(address, e))?;
    }
    // The socket takes its mode from the umask at bind: 0600, with no
    // moment at which another user could connect. (The umask is the
    // process's: a file another thread made in this instant would only
    // come out less open.)
    let umask = nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o177));
    let listener = tokio::net::UnixListener::bind(address);
    nix::sys::stat::umask(umask);
    listener.map_err(|e| SnapshotterError::io(address, e))
}

async fn shutdown() {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::info!("stopping: mounts stay served by their daemons");
}
