//! The command line and the config file, through the real binary.

use crate::common::{run_command, write_file};

#[test]
fn check_config_prints_the_effective_settings_with_overrides() {
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(
        dir.path(),
        "site.toml",
        "[server]\nlisten = \"127.0.0.1:9001\"\nmax_body_bytes = 4096\n",
    );
    let path = path.to_str().unwrap();
    let (status, out, err) = run_command(
        dir.path(),
        &["check-config", "--config", path, "--data-dir", "/srv/rm"],
    );
    assert!(status.success(), "{err}");
    assert!(out.contains("config OK"), "{out}");
    assert!(out.contains("site.toml"), "{out}");
    assert!(out.contains("listen = \"127.0.0.1:9001\""), "{out}");
    assert!(out.contains("max_body_bytes = 4096"), "{out}");
    assert!(out.contains("data_dir = \"/srv/rm\""), "{out}");
}

#[test]
fn without_a_config_file_the_built_in_defaults_apply() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, err) = run_command(dir.path(), &["check-config"]);
    assert!(status.success(), "{err}");
    assert!(out.contains("built-in defaults"), "{out}");
    assert!(out.contains("listen = \"0.0.0.0:8080\""), "{out}");
    assert!(out.contains("data_dir = \"./data\""), "{out}");
}

#[test]
fn roommanager_toml_in_the_working_directory_is_picked_up() {
    let dir = tempfile::tempdir().unwrap();
    write_file(dir.path(), "roommanager.toml", "[log]\nlevel = \"debug\"\n");
    let (status, out, err) = run_command(dir.path(), &["check-config"]);
    assert!(status.success(), "{err}");
    assert!(out.contains("level = \"debug\""), "{out}");
}

#[test]
fn the_documented_default_file_is_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let file = concat!(env!("CARGO_MANIFEST_DIR"), "/roommanager.toml");
    let (status, _, err) = run_command(dir.path(), &["check-config", "--config", file]);
    assert!(status.success(), "{err}");
}

/// Each broken file must fail with a message that names the offending key, and never panic.
#[test]
fn bad_config_files_name_the_key_and_exit_non_zero() {
    let cases = [
        ("[server]\nlisten_port = 8080\n", "listen_port"),
        ("[sevrer]\nlisten = \"0.0.0.0:1\"\n", "sevrer"),
        ("[server]\nlisten = \"here\"\n", "listen"),
        ("[server]\nmax_body_bytes = -5\n", "max_body_bytes"),
        ("[server]\nmax_body_bytes = 10\n", "server.max_body_bytes"),
        (
            "[server]\nshutdown_grace_secs = 99999\n",
            "server.shutdown_grace_secs",
        ),
        ("[storage]\ndata_dir = \"\"\n", "storage.data_dir"),
        ("[log]\nlevel = \"roommanager=loud\"\n", "log.level"),
        (
            "[media.rtmp]\nmax_reencodes = 0\n",
            "media.rtmp.max_reencodes",
        ),
        (
            "[media.rtmp]\nmax_reencodes = 9223372036854775807\n",
            "media.rtmp.max_reencodes",
        ),
        (
            "[media.rtmp]\nmax_reencodes = 65\n",
            "media.rtmp.max_reencodes",
        ),
        (
            "[rooms]\nrecording_retry_secs = 0\n",
            "rooms.recording_retry_secs",
        ),
        ("[server\nlisten = 1\n", "server"),
    ];
    for (text, key) in cases {
        let dir = tempfile::tempdir().unwrap();
        let path = write_file(dir.path(), "bad.toml", text);
        for command in ["check-config", "serve"] {
            let (status, _, err) =
                run_command(dir.path(), &[command, "--config", path.to_str().unwrap()]);
            assert!(!status.success(), "{command} accepted {text:?}");
            assert_eq!(status.code(), Some(2), "{command} {text:?}: {err}");
            assert!(
                err.contains(key),
                "{command} {text:?}: error does not name {key}: {err}"
            );
            assert!(!err.contains("panicked"), "{err}");
        }
    }
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = run_command(dir.path(), &["--config", "nope.toml", "check-config"]);
    assert_eq!(status.code(), Some(2));
    assert!(err.contains("nope.toml"), "{err}");
}

#[test]
fn a_bad_listen_flag_is_refused_by_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let (status, _, err) = run_command(dir.path(), &["--listen", "nowhere", "check-config"]);
    assert!(!status.success());
    assert!(err.contains("--listen"), "{err}");
}

#[test]
fn help_lists_the_commands_and_options() {
    let dir = tempfile::tempdir().unwrap();
    let (status, out, _) = run_command(dir.path(), &["--help"]);
    assert!(status.success());
    for word in [
        "serve",
        "check-config",
        "--config",
        "--data-dir",
        "--listen",
    ] {
        assert!(out.contains(word), "help lacks {word}:\n{out}");
    }
}

#[test]
fn nginx_config_prints_the_config_the_rtmp_backend_runs() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (status, out, err) = run_command(
        dir.path(),
        &[
            "nginx-config",
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "0.0.0.0:9090",
        ],
    );
    assert!(status.success(), "{err}");
    assert!(
        out.contains("load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;"),
        "{out}"
    );
    // The callbacks carry the secret generated at first start and kept in the data dir.
    let secret = std::fs::read_to_string(data.join("nginx/conf/hook.secret")).unwrap();
    assert!(secret.len() >= 32, "{secret}");
    assert!(
        out.contains(&format!(
            "on_publish http://127.0.0.1:9090/hooks/rtmp/on_publish?secret={secret};"
        )),
        "{out}"
    );
    assert!(
        out.contains("listen 127.0.0.1:8936;"),
        "control stays on loopback: {out}"
    );
    let hls = format!("hls_path {}/media/hls/live;", data.display());
    assert!(out.contains(&hls), "{out}");
}
