#!/usr/bin/env python3
"""Generates the registry benchmarks' images as one OCI layout (nothing is
downloaded):

  one:1      one layer: a copy of part of this machine's /usr (files up to 4 MB, ONE_MB of
             files, default 460 MB: about 150 MB of gzip here)
  one:2      one:1 plus a small layer on top (SMALL_FILES new files)
  one:re     one:1 rebuilt: the same tree with every 50th file changed and
             SMALL_FILES new files, as one new layer (a new layer digest,
             most files the same)
  five:1     FILES (9,000) generated files, TOTAL_MB (300 MB) in five
             layers, a third of them incompressible

Usage: gen-images.py OUT_DIR. Writes OUT_DIR/layout (the OCI layout) and
OUT_DIR/sizes.json (the distinct file contents' bytes of the images, and
their layers' uncompressed bytes).
"""
import gzip, hashlib, io, json, os, random, shutil, stat, subprocess, sys, tarfile

out = sys.argv[1]
ONE_MB = int(os.environ.get("ONE_MB", "460"))
SMALL_FILES = int(os.environ.get("SMALL_FILES", "300"))
FILES = int(os.environ.get("FILES", "9000"))
TOTAL_MB = int(os.environ.get("TOTAL_MB", "300"))
layout = os.path.join(out, "layout")
os.makedirs(os.path.join(layout, "blobs", "sha256"), exist_ok=True)

contents = {}        # sha256 -> size, per image
def blob(data):
    d = hashlib.sha256(data).hexdigest()
    with open(os.path.join(layout, "blobs", "sha256", d), "wb") as f:
        f.write(data)
    return "sha256:" + d, len(data)

def gzip_blob(raw):
    """gzip -6 of the tar, as an image build would compress it."""
    gz = subprocess.run(["gzip", "-6", "-n", "-c"], input=raw, stdout=subprocess.PIPE, check=True).stdout
    return blob(gz)

class Layer:
    def __init__(self):
        self.buf = io.BytesIO()
        self.tar = tarfile.open(fileobj=self.buf, mode="w", format=tarfile.PAX_FORMAT)
        self.files = {}
    def add(self, name, data, mode=0o644, mtime=1700000000):
        info = tarfile.TarInfo(name)
        info.size, info.mode, info.mtime = len(data), mode, mtime
        self.tar.addfile(info, io.BytesIO(data))
        self.files[hashlib.sha256(data).hexdigest()] = len(data)
    def add_dir(self, name, mode=0o755, mtime=1700000000):
        info = tarfile.TarInfo(name)
        info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, mtime
        self.tar.addfile(info)
    def add_symlink(self, name, target, mtime=1700000000):
        info = tarfile.TarInfo(name)
        info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, mtime
        self.tar.addfile(info)
    def close(self):
        self.tar.close()
        raw = self.buf.getvalue()
        diff_id = "sha256:" + hashlib.sha256(raw).hexdigest()
        digest, size = gzip_blob(raw)
        return {"diff_id": diff_id, "digest": digest, "size": size, "tar_size": len(raw), "files": self.files}

# --- the /usr copy -------------------------------------------------------
def usr_tree(limit):
    """(path in the image, kind, data or target) of /usr, sorted, until limit bytes of files."""
    picked, total = [], 0
    for top, dirs, names in os.walk("/usr"):
        dirs.sort()
        rel = os.path.relpath(top, "/")
        picked.append((rel, "dir", None))
        for n in sorted(names):
            p = os.path.join(top, n)
            try:
                st = os.lstat(p)
            except OSError:
                continue
            if stat.S_ISLNK(st.st_mode):
                picked.append((os.path.join(rel, n), "symlink", os.readlink(p)))
            elif stat.S_ISREG(st.st_mode) and st.st_size <= 4 << 20:
                try:
                    with open(p, "rb") as f:
                        data = f.read()
                except OSError:
                    continue
                picked.append((os.path.join(rel, n), "file", data))
                total += len(data)
                if total >= limit:
                    return picked
    return picked

tree = usr_tree(ONE_MB << 20)
def usr_layer(changed=False, extra=0):
    layer = Layer()
    i = 0
    for path, kind, data in tree:
        if kind == "dir":
            layer.add_dir(path)
        elif kind == "symlink":
            layer.add_symlink(path, data)
        else:
            i += 1
            if changed and i % 50 == 0:
                data = data + b"\nrebuilt\n"
            layer.add(path, data)
    add_small(layer, "usr/local/share/added", extra)
    return layer.close()

def add_small(layer, base, count):
    rng = random.Random(7)
    if count:
        layer.add_dir(base)
    for i in range(count):
        n = rng.choice([300, 2000, 9000, 40000])
        layer.add(f"{base}/new-{i:05d}", rng.randbytes(n // 3) + b"x" * (n - n // 3))

one = usr_layer()
small = Layer(); add_small(small, "usr/local/share/added", SMALL_FILES); small = small.close()
rebuilt = usr_layer(changed=True, extra=SMALL_FILES)

# --- five layers of generated files (the issue-4 image) --------------------
rng = random.Random(4)
sizes = [rng.choice([200, 900, 2500, 6000, 14000, 40000]) for _ in range(FILES - 20)]
big = max(0, (TOTAL_MB << 20) - sum(sizes)) // 20
sizes += [big] * 20
rng.shuffle(sizes)
words = b" ".join(bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(4000))
def content(i, n):
    if i % 3 == 0:
        return rng.randbytes(n)
    base = words[(i * 7919) % 1000:]
    return (base * (n // len(base) + 1))[:n]
five, per = [], (len(sizes) + 4) // 5
for l in range(5):
    layer = Layer()
    for i in range(l * per, min(len(sizes), (l + 1) * per)):
        layer.add(f"usr/share/l{l}/d{i % 97:02d}/file-{i:05d}", content(i, sizes[i]))
    five.append(layer.close())

# --- the layout ------------------------------------------------------------
manifests = []
def image(name, layers):
    config = {"architecture": "amd64", "os": "linux", "config": {},
              "rootfs": {"type": "layers", "diff_ids": [l["diff_id"] for l in layers]}}
    cd, cs = blob(json.dumps(config).encode())
    manifest = {"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
                "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                            "digest": l["digest"], "size": l["size"]} for l in layers]}
    md, ms = blob(json.dumps(manifest).encode())
    manifests.append({"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
                      "annotations": {"org.opencontainers.image.ref.name": name}})

image("one-1", [one]); image("one-2", [one, small]); image("one-re", [rebuilt]); image("five-1", five)
json.dump({"schemaVersion": 2, "manifests": manifests}, open(os.path.join(layout, "index.json"), "w"))
open(os.path.join(layout, "oci-layout"), "w").write('{"imageLayoutVersion":"1.0.0"}')

def distinct(*layers):
    files = {}
    for l in layers:
        files.update(l["files"])
    return sum(files.values())
sizes = {
    "one_gzip": one["size"], "one_tar": one["tar_size"], "one_files": len(one["files"]),
    "small_tar": small["tar_size"], "rebuilt_tar": rebuilt["tar_size"],
    "five_gzip": sum(l["size"] for l in five), "five_tar": sum(l["tar_size"] for l in five),
    # The three images of the store-size goal: one:1 (+ one:2 on it), one:re, five:1.
    "distinct_contents": distinct(one, small, rebuilt, *five),
    "distinct_layers": one["tar_size"] + small["tar_size"] + rebuilt["tar_size"] + sum(l["tar_size"] for l in five),
    "new_in_rebuilt": distinct(one, rebuilt) - distinct(one),
}
json.dump(sizes, open(os.path.join(out, "sizes.json"), "w"), indent=1)
print(f"  one:1 {one['tar_size'] >> 20} MB tar, {one['size'] >> 20} MB gzip, {len(one['files'])} distinct files; "
      f"one:re adds {sizes['new_in_rebuilt'] >> 20} MB of new contents; "
      f"five:1 {sizes['five_tar'] >> 20} MB tar, {sizes['five_gzip'] >> 20} MB gzip")
