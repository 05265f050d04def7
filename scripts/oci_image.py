#!/usr/bin/env python3
"""Writes a one-layer OCI image (FROM scratch) holding the files under a directory, as an OCI
image layout in a tar archive (what `skopeo copy oci-archive:FILE ...` reads), without a
container daemon. Reproducible: the same files, labels and time give the same bytes, so the
same digest (entries in name order, owner 0:0, every time the given one, gzip without a name
or time).

    oci_image.py --root DIR --out FILE.oci.tar --created EPOCH --arch ARCH --ref NAME \\
                 [--label KEY=VALUE ...]

Prints the image's manifest digest.
"""

import argparse
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from datetime import datetime, timezone

MANIFEST = "application/vnd.oci.image.manifest.v1+json"
CONFIG = "application/vnd.oci.image.config.v1+json"
LAYER = "application/vnd.oci.image.layer.v1.tar+gzip"
INDEX = "application/vnd.oci.image.index.v1+json"


def tar_of(entries, mtime):
    """A tar of `entries` ((name, bytes or None for a directory, mode)) in the order given."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.USTAR_FORMAT) as tar:
        for name, data, mode in entries:
            info = tarfile.TarInfo(name)
            info.mtime = mtime
            info.mode = mode
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            if data is None:
                info.type = tarfile.DIRTYPE
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def tree(root):
    """Every directory and file under `root`, relative, in name order; refuses anything else."""
    def fail(error):
        sys.exit(f"oci_image: {error}")

    entries = []
    for dirpath, dirnames, filenames in os.walk(root, onerror=fail):
        dirnames.sort()
        rel = os.path.relpath(dirpath, root)
        if rel != ".":
            entries.append((rel + "/", None, 0o755))
        for d in dirnames:
            if os.path.islink(os.path.join(dirpath, d)):
                fail(f"{os.path.join(dirpath, d)} is a symbolic link")
        for f in sorted(filenames):
            path = os.path.join(dirpath, f)
            if os.path.islink(path) or not os.path.isfile(path):
                fail(f"{path} is not a regular file")
            with open(path, "rb") as fh:
                data = fh.read()
            # Executable for all, or for none: the file's own bits, whoever runs this.
            mode = 0o755 if os.stat(path).st_mode & 0o111 else 0o644
            entries.append((os.path.normpath(os.path.join(rel, f)), data, mode))
    return sorted(entries, key=lambda e: e[0])


def canonical(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()


def descriptor(media_type, data, annotations=None):
    d = {"mediaType": media_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}
    if annotations:
        d["annotations"] = annotations
    return d


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--root", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--created", required=True, type=int, help="seconds since the epoch")
    p.add_argument("--arch", required=True)
    p.add_argument("--ref", required=True, help="the image's name in the layout (its tag)")
    p.add_argument("--label", action="append", default=[])
    a = p.parse_args()
    labels = {}
    for kv in a.label:
        key, sep, value = kv.partition("=")
        if not sep or not key:
            sys.exit(f"oci_image: --label {kv!r} is not KEY=VALUE")
        labels[key] = value
    created = datetime.fromtimestamp(a.created, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")

    layer_tar = tar_of(tree(a.root), a.created)
    gz = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=gz, mtime=0, compresslevel=9) as g:
        g.write(layer_tar)
    layer = gz.getvalue()
    config = canonical({
        "architecture": a.arch,
        "os": "linux",
        "created": created,
        "config": {"Labels": labels},
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + hashlib.sha256(layer_tar).hexdigest()]},
        "history": [{"created": created, "created_by": "scripts/package.sh (FROM scratch)"}],
    })
    manifest = canonical({
        "schemaVersion": 2,
        "mediaType": MANIFEST,
        "config": descriptor(CONFIG, config),
        "layers": [descriptor(LAYER, layer)],
        "annotations": labels,
    })
    manifest_desc = descriptor(MANIFEST, manifest, {"org.opencontainers.image.ref.name": a.ref})
    index = canonical({"schemaVersion": 2, "mediaType": INDEX, "manifests": [manifest_desc]})

    blobs = {}
    for data in (layer, config, manifest):
        blobs["blobs/sha256/" + hashlib.sha256(data).hexdigest()] = data
    entries = [("blobs/", None, 0o755), ("blobs/sha256/", None, 0o755)]
    entries += [(name, data, 0o644) for name, data in sorted(blobs.items())]
    entries += [("index.json", index, 0o644), ("oci-layout", canonical({"imageLayoutVersion": "1.0.0"}), 0o644)]
    tmp = a.out + ".tmp"
    with open(tmp, "wb") as fh:
        fh.write(tar_of(entries, a.created))
    os.replace(tmp, a.out)
    print(manifest_desc["digest"])


if __name__ == "__main__":
    main()
