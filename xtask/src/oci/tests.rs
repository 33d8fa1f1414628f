use super::*;

/// A tar of `(path, kind, mode, mtime, content or link target)` in the order given, with the extras builders add
/// (owner names, PAX records).
fn layer(entries: &[(&str, tar::EntryType, u32, u64, &str)], with_names: bool) -> Vec<u8> {
    let mut builder = tar::Builder::new(Vec::new());
    for (path, kind, mode, mtime, data) in entries {
        if with_names {
            builder
                .append_pax_extensions([("mtime", format!("{mtime}.123456789").as_bytes()), ("atime", b"1".as_slice())])
                .unwrap();
        }
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(*kind);
        header.set_mode(*mode);
        header.set_mtime(*mtime);
        header.set_uid(0);
        header.set_gid(0);
        if with_names {
            header.set_username("builder").unwrap();
            header.set_groupname("builder").unwrap();
        }
        if kind.is_hard_link() || kind.is_symlink() {
            header.set_size(0);
            builder.append_link(&mut header, path, data).unwrap();
        } else {
            header.set_size(data.len() as u64);
            builder.append_data(&mut header, path, data.as_bytes()).unwrap();
        }
    }
    builder.into_inner().unwrap()
}

use tar::EntryType::{Directory, Link, Regular, Symlink};

#[test]
fn a_layer_comes_out_the_same_whatever_the_order_times_and_names() {
    let first = layer(
        &[
            ("usr/", Directory, 0o755, 100, ""),
            ("usr/bin/", Directory, 0o755, 200, ""),
            ("usr/bin/python3", Symlink, 0o777, 300, "python3.13"),
            ("usr/bin/python3.13", Regular, 0o755, 400, "ELF"),
            ("app/main.py", Regular, 0o644, 500, "print(1)"),
        ],
        false,
    );
    let second = layer(
        &[
            ("./app/main.py", Regular, 0o644, 1_700_000_000, "print(1)"),
            ("usr/bin/python3.13", Regular, 0o755, 7, "ELF"),
            ("./usr/bin/python3", Symlink, 0o777, 8, "python3.13"),
            ("usr/bin", Directory, 0o755, 9, ""),
            ("usr", Directory, 0o755, 10, ""),
        ],
        true,
    );
    let (a, b) = (normalize_layer(&first, 42).unwrap(), normalize_layer(&second, 42).unwrap());
    assert_eq!(a, b);
    let entries = read_entries(&a).unwrap();
    let paths: Vec<&str> = entries.iter().map(|entry| entry.path.as_str()).collect();
    assert_eq!(paths, ["app/main.py", "usr/", "usr/bin/", "usr/bin/python3", "usr/bin/python3.13"]);
    let mut archive = tar::Archive::new(a.as_slice());
    for entry in archive.entries().unwrap() {
        let entry = entry.unwrap();
        assert_eq!(entry.header().mtime().unwrap(), 42);
        assert_eq!(entry.header().username().unwrap(), Some(""));
    }
    assert_ne!(normalize_layer(&first, 43).unwrap(), a, "the commit's time is in the layer");
}

#[test]
fn modes_and_owners_are_kept() {
    let mut builder = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_entry_type(Directory);
    header.set_mode(0o1777);
    header.set_uid(65532);
    header.set_gid(65532);
    header.set_size(0);
    builder.append_data(&mut header, "tmp/", std::io::empty()).unwrap();
    let entries = read_entries(&normalize_layer(&builder.into_inner().unwrap(), 1).unwrap()).unwrap();
    assert_eq!((entries[0].mode, entries[0].uid, entries[0].gid), (0o1777, 65532, 65532));
}

#[test]
fn hard_links_point_at_the_first_path_of_their_group() {
    let written_link_first =
        layer(&[("usr/bin/b", Regular, 0o755, 1, "same"), ("usr/bin/a", Link, 0o755, 1, "usr/bin/b")], false);
    let written_other_way =
        layer(&[("usr/bin/a", Regular, 0o755, 1, "same"), ("usr/bin/b", Link, 0o755, 1, "usr/bin/a")], false);
    let normalized = normalize_layer(&written_link_first, 5).unwrap();
    assert_eq!(normalized, normalize_layer(&written_other_way, 5).unwrap());
    let entries = read_entries(&normalized).unwrap();
    assert_eq!(
        (entries[0].path.as_str(), entries[0].kind, entries[0].content.as_slice()),
        ("usr/bin/a", Regular, &b"same"[..])
    );
    assert_eq!((entries[1].kind, entries[1].link.as_deref()), (Link, Some("usr/bin/a")));
}

#[test]
fn gzip_is_the_same_every_time_and_carries_no_time() {
    let data = b"layer bytes ".repeat(1000);
    let compressed = gzip(&data).unwrap();
    assert_eq!(compressed, gzip(&data).unwrap());
    assert_eq!(&compressed[4..8], &[0, 0, 0, 0], "no modification time");
    assert_eq!(compressed[9], 255, "operating system unknown");
    assert_eq!(decompress(&compressed).unwrap(), data);
}

#[test]
fn a_zstd_layer_is_refused_with_a_reason() {
    let error = decompress(&[0x28, 0xb5, 0x2f, 0xfd, 0, 0]).unwrap_err().to_string();
    assert!(error.contains("zstd"), "{error}");
}

fn builder_config(created: &str, comment_suffix: &str, extra: Value) -> Value {
    let mut config = json!({
        "architecture": "amd64",
        "os": "linux",
        "created": created,
        "container": "abc",
        "docker_version": "20.10.24",
        "moby.buildkit.buildinfo.v1": "e30=",
        "config": {
            "Hostname": "", "AttachStdin": false, "User": "65532:65532", "Env": ["PATH=/usr/bin"],
            "Entrypoint": ["/usr/local/bin/launcher"], "ExposedPorts": {"5000/tcp": {}}, "WorkingDir": "/app",
            "Labels": null, "Healthcheck": {"Test": ["CMD", "/usr/local/bin/launcher", "probe"], "Interval": 5000000000u64}
        },
        "history": [
            {"created": created, "created_by": format!("COPY /rootfs/ / {comment_suffix}")},
            {"created": created, "created_by": "ENV PATH=/usr/bin", "empty_layer": true},
            {"created": created, "created_by": format!("COPY app /app {comment_suffix}")},
        ],
        "rootfs": {"type": "layers", "diff_ids": ["sha256:old1", "sha256:old2"]},
    });
    if let (Value::Object(config), Value::Object(extra)) = (&mut config, extra) {
        config.extend(extra);
    }
    config
}

#[test]
fn the_configuration_keeps_what_describes_the_image_and_nothing_of_the_build() {
    let labels = BTreeMap::from([("org.opencontainers.image.revision".to_owned(), "abc123".to_owned())]);
    let diff_ids = ["sha256:new1".to_owned(), "sha256:new2".to_owned()];
    let created = "2026-11-30T10:00:00Z";
    let from_engine =
        normalize_config(&builder_config("2026-12-01T22:00:00Z", "# buildkit", json!({})), &diff_ids, created, &labels)
            .unwrap();
    let from_buildx = normalize_config(
        &builder_config("2026-12-02T08:00:00.123Z", "", json!({"container_config": {}, "author": "x"})),
        &diff_ids,
        created,
        &labels,
    )
    .unwrap();
    assert_eq!(from_engine, from_buildx, "the builder and the build time leave no trace");
    let config: Value = serde_json::from_slice(&from_engine).unwrap();
    assert_eq!(config["created"], created);
    assert_eq!(config["rootfs"]["diff_ids"], json!(diff_ids));
    assert_eq!(config["config"]["Labels"]["org.opencontainers.image.revision"], "abc123");
    assert_eq!(config["config"]["User"], "65532:65532");
    assert!(config["config"].get("Hostname").is_none() && config.get("container").is_none());
    assert!(config.get("moby.buildkit.buildinfo.v1").is_none(), "no build arguments or context paths");
    assert_eq!(config["history"].as_array().unwrap().len(), 2, "one entry per layer");
    assert_eq!(config["history"][1]["created_by"], "COPY app /app");
    assert!(!String::from_utf8(from_engine).unwrap().contains(": "), "canonical: no white space");
}

#[test]
fn a_docker_save_archive_is_read_in_either_layout() {
    let plain = layer(&[("etc/passwd", Regular, 0o644, 1, "root")], false);
    let compressed = gzip(&plain).unwrap();
    for (config_path, layer_path, layer_bytes) in
        [("abc.json", "1a/layer.tar", plain.clone()), ("blobs/sha256/cfg", "blobs/sha256/lay", compressed.clone())]
    {
        let mut builder = tar::Builder::new(Vec::new());
        let mut add = |path: &str, bytes: &[u8]| {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, bytes).unwrap();
        };
        add(
            "manifest.json",
            json!([{"Config": config_path, "RepoTags": ["a:b"], "Layers": [layer_path]}]).to_string().as_bytes(),
        );
        add(config_path, br#"{"os":"linux"}"#);
        add(layer_path, &layer_bytes);
        let saved = read_docker_save(builder.into_inner().unwrap().as_slice()).unwrap();
        assert_eq!(saved.config["os"], "linux");
        assert_eq!(saved.layers, std::slice::from_ref(&plain));
    }
}

#[test]
fn a_layout_names_its_blobs_by_digest_and_loads_in_docker() {
    let folder = tempfile::tempdir().unwrap();
    let dir = folder.path().join("oci");
    let writer = LayoutWriter::create(&dir).unwrap();
    let layer = writer.blob(LAYER_TYPE, b"layer").unwrap();
    let config = writer.blob(CONFIG_TYPE, b"{}").unwrap();
    let manifest = writer.blob(MANIFEST_TYPE, b"{\"schemaVersion\":2}").unwrap();
    assert_eq!(layer.digest, sha256(b"layer"));
    assert!(dir.join("blobs/sha256").join(&layer.digest[7..]).is_file());
    writer.finish(manifest.clone(), "abc123", &[("r/app:abc123".into(), config.clone(), vec![layer.clone()])]).unwrap();
    let index: Value = serde_json::from_slice(&std::fs::read(dir.join("index.json")).unwrap()).unwrap();
    assert_eq!(index["manifests"][0]["digest"], manifest.digest.as_str());
    assert_eq!(index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"], "abc123");
    let docker: Value = serde_json::from_slice(&std::fs::read(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(docker[0]["Config"], format!("blobs/sha256/{}", &config.digest[7..]));
    assert_eq!(docker[0]["RepoTags"][0], "r/app:abc123");
}
