//! Images and layers: OCI/Docker manifests, indexes and configs; layer
//! ingest and reconstruction; whiteouts; the image records in the store.

pub mod changes;
mod decode;
pub mod dir_index;
mod entry;
mod error;
pub mod gzip;
pub mod ingest;
pub mod inspect;
#[cfg(strata_isal)]
mod isal;
mod layer_db;
pub mod layer_source;
pub mod limits;
pub mod oci;
pub mod prune;
pub mod publish;
pub mod recipe;
mod records;

pub use decode::{stream_channel, StreamReader, StreamSender, CHUNK, READ_BUFFER};
pub use entry::{Kind, LayerEntry};
pub use error::LayerError;
pub use ingest::{
    ingest_layer, ingest_layer_buffered, ingest_layer_on_threads, show as show_path, Compression,
    IngestedLayer,
};
pub use layer_db::{
    fs_layer, layer_entries, layer_info, open_layer_tar, record_layer, record_layer_blob,
    write_layer_tar, LayerInfo, LayerReader,
};
pub use layer_source::StoreSource;
pub use limits::Limits;
pub use records::{
    get_image, image_config, image_layer_ids, list_images, record_image, remove_image,
    resolve_image, set_tag, tag_image, ImageError, ImageRecord, MovedTag, NewImage, RemovalEvent,
};
