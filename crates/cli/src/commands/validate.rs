//! `shipit validate`.

use crate::cli::Cli;
use crate::exit::Exit;
use crate::{checks, diagnostics};

/// Checks the manifest, and what each environment's target would refuse at deploy time (see
/// [`checks`]), and summarises what it describes.
pub fn run(cli: &Cli) -> Exit {
    let (app, manifest) = match super::load_manifest_located(cli) {
        Ok(located) => located,
        Err(exit) => return exit,
    };
    let checked = checks::run(&app, &manifest);
    checks::print_warnings(cli, manifest.file(), &checked.warnings);
    crate::report::result(serde_json::json!({ "warnings": &checked.warnings }));
    if let Some(errors) = &checked.errors {
        diagnostics::report_manifest(cli, errors);
        return Exit::BadInput;
    }
    let warnings = checked.warnings;
    if cli.json {
        let envs: Vec<_> = app
            .environments
            .values()
            .map(|e| serde_json::json!({ "name": e.name, "target": e.target, "regions": e.regions }))
            .collect();
        crate::report::result(serde_json::json!({
                "file": cli.file.display().to_string(),
                "app": app.name,
                "services": app.services.keys().collect::<Vec<_>>(),
                "databases": app.databases.keys().collect::<Vec<_>>(),
                "environments": envs,
                "warnings": warnings,
        }));
    }
    let services: Vec<String> = app
        .services
        .values()
        .map(|s| match s.port {
            Some(p) => format!("{} (:{p})", s.name),
            None => format!("{} (worker)", s.name),
        })
        .collect();
    diagnostics::info(
        cli,
        &format!(
            "{}: ok — app {}: services {}; databases {}; environments {}",
            cli.file.display(),
            app.name,
            services.join(", "),
            if app.databases.is_empty() {
                "none".to_string()
            } else {
                app.databases.keys().cloned().collect::<Vec<_>>().join(", ")
            },
            app.environments.keys().cloned().collect::<Vec<_>>().join(", "),
        ),
    );
    Exit::Ok
}
