//! WORKDIR: the working directory (relative to the previous one), made
//! in a layer of its own when the state does not have it, as Docker's
//! builder does; otherwise a config change only.

use super::super::cache::KeyBuilder;
use super::super::error::BuildError;
use super::super::execute::Builder;
use super::super::layer::{now_secs, LayerBuilder, NewEntry};
use super::super::parse::Instruction;
use super::super::state::{commit_state, Step};
use super::super::tree::StateTree;

/// `base` joined with `path` and cleaned, absolute.
pub fn join_clean(base: &str, path: &str) -> String {
    let joined = if path.starts_with('/') {
        path.to_string()
    } else {
        format!("{}/{path}", if base.is_empty() { "/" } else { base })
    };
    let mut parts: Vec<&str> = Vec::new();
    for p in joined.split('/') {
        match p {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    format!("/{}", parts.join("/"))
}

impl Builder<'_> {
    pub(in super::super) fn dispatch_workdir(
        &mut self,
        ins: &Instruction,
    ) -> Result<(), BuildError> {
        let path = self.expand(ins, &ins.args)?;
        if path.is_empty() {
            return Err(self.error_at(ins, "WORKDIR: the path can not be empty"));
        }
        let current = self.state.run().working_dir.unwrap_or_default();
        let dir = join_clean(&current, &path);
        let tree = StateTree::open(self.store, &self.state)?;
        let exists = tree.is_dir(&dir)?;
        let text = format!("WORKDIR {dir}");
        if exists {
            // Docker's text has one space here, unlike other config changes.
            return self.metadata_step_as(ins, text, "#(nop) ", move |run, _| {
                run.working_dir = Some(dir)
            });
        }
        let mut config = self.state.config.clone();
        config
            .config
            .get_or_insert_with(Default::default)
            .working_dir = Some(dir.clone());
        let mut key = KeyBuilder::new(self.state.id.as_ref(), &text);
        key.add(
            serde_json::to_string(&config.config)
                .unwrap_or_default()
                .as_bytes(),
        );
        let key = key.finish();
        let created_by = format!("{} #(nop) {text}", self.shell().join(" "));
        self.step(ins, key, move |b, key, _| {
            let mut layer = LayerBuilder::default();
            layer.add(&dir, NewEntry::dir(0o755, 0, 0, now_secs()));
            layer.add_parents(&tree, (0, 0))?;
            let ingested = layer.ingest(b.store)?;
            commit_state(
                b.store,
                config,
                Some(ingested),
                Step {
                    created_by,
                    comment: None,
                    cache_key: key,
                    description: &text,
                },
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::join_clean;

    #[test]
    fn workdir_paths() {
        assert_eq!(join_clean("", "app"), "/app");
        assert_eq!(join_clean("/a", "b/../c"), "/a/c");
        assert_eq!(join_clean("/a", "/x/"), "/x");
        assert_eq!(join_clean("/", ".."), "/");
    }
}
