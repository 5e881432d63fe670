//! `shipit validate`.

use crate::cli::Cli;
use crate::diagnostics;
use crate::exit::Exit;

/// Checks the manifest and summarises what it describes.
pub fn run(cli: &Cli) -> Exit {
    let app = match super::load_manifest(cli) {
        Ok(app) => app,
        Err(exit) => return exit,
    };
    let warnings = shipit_render::render::unsupported_settings(&app);
    if cli.json {
        let envs: Vec<_> = app
            .environments
            .values()
            .map(|e| serde_json::json!({ "name": e.name, "target": e.target, "regions": e.regions }))
            .collect();
        println!(
            "{}",
            serde_json::json!({
                "ok": true,
                "file": cli.file.display().to_string(),
                "app": app.name,
                "services": app.services.keys().collect::<Vec<_>>(),
                "databases": app.databases.keys().collect::<Vec<_>>(),
                "environments": envs,
                "warnings": warnings,
            })
        );
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
    if !cli.json {
        for w in &warnings {
            eprintln!("warning: {w}");
        }
    }
    Exit::Ok
}
