//! One module per command.

pub mod doctor;
pub mod generate;
pub mod images;
pub mod init;
pub mod login;
pub mod ops;
pub mod render;
pub mod validate;

use shipit_core::App;
use shipit_core::manifest::{LoadError, Manifest};

use crate::cli::Cli;
use crate::diagnostics;
use crate::exit::Exit;

/// Loads the manifest named by `-f`, reporting problems; `Err` carries the exit code.
pub fn load_manifest(cli: &Cli) -> Result<App, Exit> {
    load_manifest_located(cli).map(|(app, _)| app)
}

/// As [`load_manifest`], refusing also what `validate` refuses for the targets
/// ([`crate::checks`]): a command that talks to a platform sends nothing for a manifest that
/// `validate` rejects. Warnings are left to `validate`.
pub fn load_checked(cli: &Cli) -> Result<App, Exit> {
    let (app, manifest) = load_manifest_located(cli)?;
    if let Some(errors) = crate::checks::run(&app, &manifest).errors {
        diagnostics::report_manifest(cli, &errors);
        return Err(Exit::BadInput);
    }
    Ok(app)
}

/// As [`load_manifest`], with the [`Manifest`] that places key paths (for `crate::checks`).
pub fn load_manifest_located(cli: &Cli) -> Result<(App, Manifest), Exit> {
    match shipit_core::manifest::load_located(&cli.file) {
        Ok(located) => Ok(located),
        Err(LoadError::Invalid(errors)) => {
            diagnostics::report_manifest(cli, &errors);
            Err(Exit::BadInput)
        }
        Err(e) => {
            // The hint about -f only helps when there is no file there.
            let missing = matches!(&e, LoadError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
            match &cli.searched {
                // Nothing named a manifest and none was found: say where it was looked for.
                Some(searched) if missing => diagnostics::error(
                    cli,
                    &searched.describe(),
                    Some("pass the manifest with -f PATH or SHIPIT_FILE, or create one with `shipit init`"),
                ),
                _ => {
                    let hint = missing.then_some("pass the manifest with -f PATH, or create one with `shipit init`");
                    diagnostics::error(cli, &e.to_string(), hint);
                }
            }
            Err(Exit::BadInput)
        }
    }
}
