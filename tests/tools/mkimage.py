#!/usr/bin/env python3
"""Writes OCI image layouts for the tests, independently of ferry's own code.

  mkimage.py OUT [--ref NAME] --variant PLATFORM=LAYER[,LAYER...] [--variant ...]
             [--entrypoint JSON] [--cmd JSON] [--env K=V ...] [--workdir DIR] [--user U]
             [--compress zstd|gzip|none] [--docker] [--no-platform]

A LAYER is a directory (packed as a deterministic tar), a .tar file (used as it is, then
compressed) or a .tar.zst file (used as it is). Several --ref runs into one OUT add tags to the
same layout, as `skopeo copy ... oci:OUT:TAG` does. The top-level index.json entry for a tag is a
nested image index, the way buildah and skopeo write multi-platform images.
"""
import argparse, gzip, hashlib, io, json, os, subprocess, sys, tarfile

MT = {
    "index": "application/vnd.oci.image.index.v1+json",
    "manifest": "application/vnd.oci.image.manifest.v1+json",
    "config": "application/vnd.oci.image.config.v1+json",
    "zstd": "application/vnd.oci.image.layer.v1.tar+zstd",
    "gzip": "application/vnd.oci.image.layer.v1.tar+gzip",
    "none": "application/vnd.oci.image.layer.v1.tar",
    "dlist": "application/vnd.docker.distribution.manifest.list.v2+json",
    "dmanifest": "application/vnd.docker.distribution.manifest.v2+json",
    "dconfig": "application/vnd.docker.container.image.v1+json",
    "dgzip": "application/vnd.docker.image.rootfs.diff.tar.gzip",
}


def put(out, data):
    d = hashlib.sha256(data).hexdigest()
    p = os.path.join(out, "blobs", "sha256", d)
    if not os.path.exists(p):
        with open(p, "wb") as f:
            f.write(data)
    return "sha256:" + d, len(data)


def tar_dir(path):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for root, dirs, files in os.walk(path):
            dirs.sort()
            for name in sorted(dirs) + sorted(files):
                full = os.path.join(root, name)
                info = t.gettarinfo(full, arcname=os.path.relpath(full, path))
                info.uid = info.gid = 0
                info.uname = info.gname = "root"
                info.mtime = 0
                if info.isfile():
                    with open(full, "rb") as f:
                        t.addfile(info, f)
                else:
                    t.addfile(info)
    return buf.getvalue()


def layer_bytes(spec, compress):
    if spec.endswith(".tar.zst"):
        with open(spec, "rb") as f:
            raw_c = f.read()
        raw = subprocess.run(["zstd", "-dc"], input=raw_c, capture_output=True, check=True).stdout
        return raw, raw_c, "zstd"
    if os.path.isdir(spec):
        raw = tar_dir(spec)
    else:
        with open(spec, "rb") as f:
            raw = f.read()
    if compress == "zstd":
        return raw, subprocess.run(["zstd", "-q", "-c", "-3"], input=raw, capture_output=True, check=True).stdout, "zstd"
    if compress == "gzip":
        return raw, gzip.compress(raw, mtime=0), "gzip"
    return raw, raw, "none"


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("out")
    ap.add_argument("--ref")
    ap.add_argument("--variant", action="append", required=True)
    ap.add_argument("--entrypoint", default='["/app"]')
    ap.add_argument("--cmd", default="null")
    ap.add_argument("--env", action="append", default=[])
    ap.add_argument("--workdir", default="/")
    ap.add_argument("--user", default="")
    ap.add_argument("--stop-signal", default="")
    ap.add_argument("--healthcheck", default="", help='Docker Healthcheck.Test as JSON, e.g. ["CMD", "/probe", "health"]')
    ap.add_argument("--label", action="append", default=[], help="KEY=VALUE")
    ap.add_argument("--compress", default="zstd", choices=["zstd", "gzip", "none"])
    ap.add_argument("--docker", action="store_true", help="Docker manifest-list media types")
    ap.add_argument("--no-platform", action="store_true", help="leave platform out of the index entries")
    a = ap.parse_args()

    os.makedirs(os.path.join(a.out, "blobs", "sha256"), exist_ok=True)
    with open(os.path.join(a.out, "oci-layout"), "w") as f:
        json.dump({"imageLayoutVersion": "1.0.0"}, f)
    entries = []
    for v in a.variant:
        plat, layers = v.split("=", 1)
        parts = plat.split("/")
        platform = {"os": parts[0], "architecture": parts[1]}
        if len(parts) > 2:
            platform["variant"] = parts[2]
        descs, diff_ids = [], []
        for spec in layers.split(","):
            raw, comp, kind = layer_bytes(spec, a.compress)
            dg, size = put(a.out, comp)
            mt = MT["dgzip"] if a.docker and kind == "gzip" else MT[kind]
            descs.append({"mediaType": mt, "digest": dg, "size": size})
            diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        config = dict(platform)
        config["config"] = {"Entrypoint": json.loads(a.entrypoint), "Cmd": json.loads(a.cmd),
                            "Env": a.env, "WorkingDir": a.workdir}
        if a.user:
            config["config"]["User"] = a.user
        if a.stop_signal:
            config["config"]["StopSignal"] = a.stop_signal
        if a.healthcheck:
            config["config"]["Healthcheck"] = {"Test": json.loads(a.healthcheck)}
        if a.label:
            config["config"]["Labels"] = dict(kv.split("=", 1) for kv in a.label)
        config["rootfs"] = {"type": "layers", "diff_ids": diff_ids}
        cdg, csize = put(a.out, json.dumps(config, sort_keys=True).encode())
        manifest = {"schemaVersion": 2, "mediaType": MT["dmanifest" if a.docker else "manifest"],
                    "config": {"mediaType": MT["dconfig" if a.docker else "config"], "digest": cdg, "size": csize},
                    "layers": descs}
        mdg, msize = put(a.out, json.dumps(manifest, sort_keys=True).encode())
        e = {"mediaType": manifest["mediaType"], "digest": mdg, "size": msize}
        if not a.no_platform:
            e["platform"] = platform
        entries.append(e)
    # An attestation entry like buildx adds: never to be deployed (complete, so skopeo copies it).
    empty = put(a.out, b"{}")
    att = put(a.out, json.dumps({"schemaVersion": 2, "mediaType": MT["manifest"], "config": {"mediaType": MT["config"],
              "digest": empty[0], "size": empty[1]}, "layers": []}).encode())
    entries.append({"mediaType": MT["manifest"], "digest": att[0], "size": att[1],
                    "platform": {"os": "unknown", "architecture": "unknown"},
                    "annotations": {"vnd.docker.reference.type": "attestation-manifest"}})
    index = {"schemaVersion": 2, "mediaType": MT["dlist" if a.docker else "index"], "manifests": entries}
    idg, isize = put(a.out, json.dumps(index, sort_keys=True).encode())
    ipath = os.path.join(a.out, "index.json")
    top = {"schemaVersion": 2, "mediaType": MT["index"], "manifests": []}
    if os.path.exists(ipath):
        with open(ipath) as f:
            top = json.load(f)
    top["manifests"] = [m for m in top["manifests"]
                        if not a.ref or m.get("annotations", {}).get("org.opencontainers.image.ref.name") != a.ref]
    e = {"mediaType": index["mediaType"], "digest": idg, "size": isize}
    if a.ref:
        e["annotations"] = {"org.opencontainers.image.ref.name": a.ref}
    top["manifests"].append(e)
    with open(ipath, "w") as f:
        json.dump(top, f, indent=1)
    print(idg)


if __name__ == "__main__":
    main()
