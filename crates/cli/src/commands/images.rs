//! `shipit push` and `shipit tag`: images in the registry. Neither needs a shipit.toml.

use shipit_core::ImageRef;
use shipit_registry::PushOptions;

use crate::cli::{Cli, PushArgs, TagArgs};
use crate::diagnostics;
use crate::exit::Exit;
use crate::platforms;

fn runtime() -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().ok()
}

fn short(digest: &str) -> String {
    digest
        .split_once(':')
        .map_or(digest.to_string(), |(a, h)| format!("{a}:{}", h.chars().take(12).collect::<String>()))
}

/// Pushes an OCI image layout (directory or tar) and points the tags at it, last.
pub fn push(cli: &Cli, args: &PushArgs) -> Exit {
    let image: ImageRef = match args.image.parse() {
        Ok(i) => i,
        Err(e) => {
            diagnostics::error(cli, &format!("--image: {e}"), Some("e.g. --image ghcr.io/acme/forgestack-api"));
            return Exit::BadInput;
        }
    };
    if image.digest.is_some() {
        diagnostics::error(cli, "--image must not carry a digest: the layout decides it", None);
        return Exit::BadInput;
    }
    if let Some(bad) = args.tags.iter().find(|t| !shipit_core::image::is_valid_tag(t)) {
        diagnostics::error(
            cli,
            &format!("--tag {bad:?} is not a valid tag (letters, digits, '_', '.', '-'; at most 128)"),
            None,
        );
        return Exit::BadInput;
    }
    if args.concurrency == 0 {
        diagnostics::error(cli, "--concurrency must be at least 1", None);
        return Exit::BadInput;
    }
    let client = match platforms::resolver() {
        Ok(c) => c,
        Err(e) => {
            diagnostics::error(cli, &platforms::scrub(&e.to_string()), None);
            return Exit::for_error(e.kind);
        }
    };
    let opts = PushOptions::default().concurrency(args.concurrency).mount_from(args.mount_from.clone());
    let Some(rt) = runtime() else { return Exit::Failed };
    let result = rt.block_on(client.push_layout(&args.layout, &image, &args.tags, &opts));
    match result {
        Ok(r) => {
            if cli.json {
                crate::report::result(serde_json::json!({
                        "image": r.image.name(), "digest": r.digest, "media_type": r.media_type, "tags": r.tags,
                        "blobs_uploaded": r.blobs_uploaded, "blobs_skipped": r.blobs_skipped, "blobs_mounted": r.blobs_mounted,
                        "bytes_uploaded": r.bytes_uploaded, "manifests_pushed": r.manifests_pushed, "requests": r.requests,
                }));
            } else {
                println!(
                    "pushed {}@{} as {}: {} blobs uploaded ({:.1} MB), {} already there, {} mounted; {} manifests",
                    r.image.name(),
                    short(&r.digest),
                    r.tags.join(", "),
                    r.blobs_uploaded,
                    r.bytes_uploaded as f64 / 1e6,
                    r.blobs_skipped,
                    r.blobs_mounted,
                    r.manifests_pushed
                );
            }
            Exit::Ok
        }
        Err(e) => {
            let e = shipit_core::Error::from(e);
            diagnostics::error(cli, &platforms::scrub(&e.to_string()), None);
            Exit::for_error(e.kind)
        }
    }
}

/// Points new tags at an existing image: one manifest GET and one PUT per tag, no blob moves.
pub fn tag(cli: &Cli, args: &TagArgs) -> Exit {
    let source: ImageRef = match args.source.parse() {
        Ok(i) => i,
        Err(e) => {
            diagnostics::error(
                cli,
                &format!("{}: {e}", args.source),
                Some("e.g. shipit tag ghcr.io/acme/api:3f2c1ab production"),
            );
            return Exit::BadInput;
        }
    };
    if source.tag.is_none() && source.digest.is_none() {
        diagnostics::error(
            cli,
            &format!("{}: name the source by tag or digest (REPO:TAG or REPO@DIGEST)", args.source),
            None,
        );
        return Exit::BadInput;
    }
    if let Some(bad) = args.tags.iter().find(|t| !shipit_core::image::is_valid_tag(t)) {
        diagnostics::error(
            cli,
            &format!("{bad:?} is not a valid tag (letters, digits, '_', '.', '-'; at most 128)"),
            None,
        );
        return Exit::BadInput;
    }
    let client = match platforms::resolver() {
        Ok(c) => c,
        Err(e) => {
            diagnostics::error(cli, &platforms::scrub(&e.to_string()), None);
            return Exit::for_error(e.kind);
        }
    };
    let Some(rt) = runtime() else { return Exit::Failed };
    match rt.block_on(client.retag(&source, &args.tags)) {
        Ok(r) => {
            if cli.json {
                crate::report::result(
                    serde_json::json!({ "image": r.image.name(), "digest": r.digest, "tags": r.tags, "requests": r.requests }),
                );
            } else {
                println!("{}@{} is now tagged {}", r.image.name(), short(&r.digest), r.tags.join(", "));
            }
            Exit::Ok
        }
        Err(e) => {
            let e = shipit_core::Error::from(e);
            diagnostics::error(cli, &platforms::scrub(&e.to_string()), None);
            Exit::for_error(e.kind)
        }
    }
}
