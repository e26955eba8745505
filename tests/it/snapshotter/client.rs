//! A blocking gRPC client of containerd's snapshots API on a unix socket,
//! from the code strata generates: for what `ctr` cannot send.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hyper_util::rt::TokioIo;
use strata::snapshotter::proto::snapshots::snapshots_client::SnapshotsClient;
use strata::snapshotter::proto::snapshots::*;
use strata::snapshotter::proto::types::Mount;
use tonic::transport::{Channel, Endpoint, Uri};

pub struct Client {
    runtime: tokio::runtime::Runtime,
    inner: SnapshotsClient<Channel>,
}

fn labels(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

impl Client {
    pub fn connect(socket: &Path) -> Client {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let socket: PathBuf = socket.to_path_buf();
        let channel = runtime
            .block_on(
                Endpoint::try_from("http://[::]:1")
                    .unwrap()
                    .connect_with_connector(tower::service_fn(move |_: Uri| {
                        let socket = socket.clone();
                        async move {
                            Ok::<_, std::io::Error>(TokioIo::new(
                                tokio::net::UnixStream::connect(socket).await?,
                            ))
                        }
                    })),
            )
            .expect("connect to the snapshotter");
        Client {
            runtime,
            inner: SnapshotsClient::new(channel),
        }
    }

    pub fn prepare(
        &mut self,
        key: &str,
        parent: &str,
        l: &[(&str, &str)],
    ) -> Result<Vec<Mount>, tonic::Status> {
        let request = PrepareSnapshotRequest {
            snapshotter: "strata".into(),
            key: key.into(),
            parent: parent.into(),
            labels: labels(l),
        };
        let inner = &mut self.inner;
        self.runtime
            .block_on(inner.prepare(request))
            .map(|r| r.into_inner().mounts)
    }

    pub fn view(&mut self, key: &str, parent: &str) -> Result<Vec<Mount>, tonic::Status> {
        let request = ViewSnapshotRequest {
            snapshotter: "strata".into(),
            key: key.into(),
            parent: parent.into(),
            labels: HashMap::new(),
        };
        let inner = &mut self.inner;
        self.runtime
            .block_on(inner.view(request))
            .map(|r| r.into_inner().mounts)
    }

    pub fn mounts(&mut self, key: &str) -> Result<Vec<Mount>, tonic::Status> {
        let request = MountsRequest {
            snapshotter: "strata".into(),
            key: key.into(),
        };
        let inner = &mut self.inner;
        self.runtime
            .block_on(inner.mounts(request))
            .map(|r| r.into_inner().mounts)
    }

    pub fn commit(&mut self, name: &str, key: &str) -> Result<(), tonic::Status> {
        let request = CommitSnapshotRequest {
            snapshotter: "strata".into(),
            name: name.into(),
            key: key.into(),
            labels: HashMap::new(),
        };
        let inner = &mut self.inner;
        self.runtime.block_on(inner.commit(request)).map(|_| ())
    }

    pub fn remove(&mut self, key: &str) -> Result<(), tonic::Status> {
        let request = RemoveSnapshotRequest {
            snapshotter: "strata".into(),
            key: key.into(),
        };
        let inner = &mut self.inner;
        self.runtime.block_on(inner.remove(request)).map(|_| ())
    }

    pub fn stat(&mut self, key: &str) -> Result<Info, tonic::Status> {
        let request = StatSnapshotRequest {
            snapshotter: "strata".into(),
            key: key.into(),
        };
        let inner = &mut self.inner;
        self.runtime
            .block_on(inner.stat(request))
            .map(|r| r.into_inner().info.unwrap())
    }

    pub fn update_name(&mut self, key: &str, new_name: &str) -> Result<Info, tonic::Status> {
        let request = UpdateSnapshotRequest {
            snapshotter: "strata".into(),
            info: Some(Info {
                name: key.into(),
                parent: new_name.into(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["parent".into()],
            }),
        };
        let inner = &mut self.inner;
        self.runtime
            .block_on(inner.update(request))
            .map(|r| r.into_inner().info.unwrap())
    }

    pub fn list(&mut self, filters: &[&str]) -> Result<Vec<Info>, tonic::Status> {
        let request = ListSnapshotsRequest {
            snapshotter: "strata".into(),
            filters: filters.iter().map(|f| f.to_string()).collect(),
        };
        let inner = &mut self.inner;
        self.runtime.block_on(async {
            let mut stream = inner.list(request).await?.into_inner();
            let mut out = Vec::new();
            while let Some(batch) = stream.message().await? {
                out.extend(batch.info);
            }
            Ok(out)
        })
    }

    pub fn usage(&mut self, key: &str) -> Result<UsageResponse, tonic::Status> {
        let request = UsageRequest {
            snapshotter: "strata".into(),
            key: key.into(),
        };
        let inner = &mut self.inner;
        self.runtime
            .block_on(inner.usage(request))
            .map(|r| r.into_inner())
    }
}
