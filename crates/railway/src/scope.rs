//! Names to ids: the project, environment and service a command works on, and whether the
//! token may reach them — all decided before anything changes.
//!
//! A project is found by id, or by name among the projects an account token sees (names match
//! case-insensitively; two that differ only in case are an error). A project token is bound to
//! one project and one environment, learnt from `projectToken` (`me` does not work with such
//! tokens): a command for another project or environment fails here, naming
//! `RAILWAY_API_TOKEN`. The project (its environments and services) is read once per process and
//! kept; a service missing from that copy is looked up afresh before one is created.

use std::collections::HashMap;
use std::sync::Mutex;

use shipit_core::{Error, ErrorKind, PlatformKind, Service, Target};

use crate::client::{Named, ProjectInfo, RailwayClient};
use crate::config::{API_TOKEN_ENV, PROJECT_TOKEN_ENV, RailwayToken};
use crate::error::RailwayError;

/// Where one command works: ids for everything it touches.
#[derive(Debug, Clone)]
pub(crate) struct Scope {
    /// The project.
    pub project: Named,
    /// The environment.
    pub environment: Named,
    /// The project's services when it was read.
    pub services: Vec<Named>,
}

impl Scope {
    /// The service named `name` (case-insensitively), if the project has it.
    pub fn service(&self, name: &str) -> Option<&Named> {
        find(&self.services, name)
    }
}

fn find<'a>(items: &'a [Named], name: &str) -> Option<&'a Named> {
    items.iter().find(|n| n.name == name).or_else(|| items.iter().find(|n| n.name.eq_ignore_ascii_case(name)))
}

/// Whether `s` looks like a Railway id (a UUID).
fn is_id(s: &str) -> bool {
    s.len() == 36 && s.chars().all(|c| c.is_ascii_hexdigit() || c == '-') && s.matches('-').count() == 4
}

/// The one item named `name`, case-insensitively; two that differ only in case are an error.
fn one_named<'a>(items: &'a [Named], name: &str, what: &str) -> Result<Option<&'a Named>, Error> {
    let matches: Vec<&Named> = items.iter().filter(|n| n.name.eq_ignore_ascii_case(name)).collect();
    match matches.as_slice() {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        many => Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "{} Railway {what}s are named {name:?} but for case ({}): rename one, or give the id",
                many.len(),
                many.iter().map(|n| format!("{:?} ({})", n.name, n.id)).collect::<Vec<_>>().join(", ")
            ),
        )),
    }
}

/// Resolves and caches scopes.
#[derive(Debug, Default)]
pub(crate) struct Resolver {
    projects: Mutex<HashMap<String, ProjectInfo>>,
}

impl Resolver {
    fn cached(&self, key: &str) -> Option<ProjectInfo> {
        self.projects.lock().ok().and_then(|m| m.get(key).cloned())
    }

    fn keep(&self, key: &str, p: &ProjectInfo) {
        if let Ok(mut m) = self.projects.lock() {
            m.insert(key.to_string(), p.clone());
        }
    }

    /// The scope of `target`, from the cache or from Railway.
    pub async fn scope(&self, client: &RailwayClient, target: Target<'_>) -> Result<Scope, Error> {
        let wanted = target.app.targets.railway.project.clone().unwrap_or_else(|| target.app.name.clone());
        let env_name = target.app.targets.railway.environment_name(&target.env.name).to_string();
        let key = format!("{wanted}\u{0}{env_name}");
        let (project, token_env) = match self.cached(&key) {
            Some(p) => (p, None),
            None => {
                let (p, token_env) = self.lookup(client, &wanted).await?;
                (p, token_env)
            }
        };
        let environment = match one_named(&project.environments, &env_name, "environment")? {
            Some(e) => e.clone(),
            None => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "Railway project {:?} has no environment {env_name:?} (it has {}){}: nothing was changed",
                        project.name,
                        names(&project.environments),
                        if env_name == target.env.name {
                            String::new()
                        } else {
                            format!("; `[targets.railway.environments]` maps {:?} to it", target.env.name)
                        }
                    ),
                ));
            }
        };
        if let Some(bound) = token_env
            && bound.id != environment.id
        {
            return Err(RailwayError::OutOfScope(format!(
                "{PROJECT_TOKEN_ENV} is a project token for environment {:?} of project {:?}, so it cannot reach environment {:?}: \
                 use a token for that environment, or an account or workspace token in {API_TOKEN_ENV} (nothing was changed)",
                bound.name, project.name, environment.name
            ))
            .into());
        }
        self.keep(&key, &project);
        Ok(Scope { project: Named { id: project.id, name: project.name }, environment, services: project.services })
    }

    /// Reads the project (and, for a project token, the environment it is bound to).
    async fn lookup(&self, client: &RailwayClient, wanted: &str) -> Result<(ProjectInfo, Option<Named>), Error> {
        match client.token() {
            Some(RailwayToken::Project(_)) => {
                let t = client.project_token().await?;
                let matches = t.project.id == wanted || t.project.name.eq_ignore_ascii_case(wanted);
                if !matches {
                    return Err(RailwayError::OutOfScope(format!(
                        "{PROJECT_TOKEN_ENV} is a project token for project {:?}, not {wanted:?}: \
                         use that project's token, or an account or workspace token in {API_TOKEN_ENV} (nothing was changed)",
                        t.project.name
                    ))
                    .into());
                }
                let p = client.project(&t.project.id).await?;
                Ok((p, Some(t.environment)))
            }
            _ => {
                let id = if is_id(wanted) {
                    wanted.to_string()
                } else {
                    let all = client.projects().await?;
                    match one_named(&all, wanted, "project")? {
                        Some(p) => p.id.clone(),
                        None => {
                            return Err(Error::new(
                                ErrorKind::NotFound,
                                format!(
                                    "no Railway project named {wanted:?} is visible to the token in {} (it sees {}): \
                                     set `[targets.railway] project` to its name or id (nothing was changed)",
                                    client.token_env(),
                                    if all.is_empty() { "none".to_string() } else { names(&all) }
                                ),
                            ));
                        }
                    }
                };
                Ok((client.project(&id).await?, None))
            }
        }
    }

    /// The project's services read afresh (before creating one), and the cache updated.
    pub async fn refresh_services(
        &self,
        client: &RailwayClient,
        target: Target<'_>,
        scope: &mut Scope,
    ) -> Result<(), Error> {
        let p = client.project(&scope.project.id).await?;
        scope.services = p.services.clone();
        let wanted = target.app.targets.railway.project.clone().unwrap_or_else(|| target.app.name.clone());
        let env_name = target.app.targets.railway.environment_name(&target.env.name).to_string();
        self.keep(&format!("{wanted}\u{0}{env_name}"), &p);
        Ok(())
    }

    /// Notes a service created in the project.
    pub fn created(&self, target: Target<'_>, service: Named) {
        let wanted = target.app.targets.railway.project.clone().unwrap_or_else(|| target.app.name.clone());
        let env_name = target.app.targets.railway.environment_name(&target.env.name).to_string();
        if let Ok(mut m) = self.projects.lock()
            && let Some(p) = m.get_mut(&format!("{wanted}\u{0}{env_name}"))
        {
            p.services.push(service);
        }
    }
}

fn names(items: &[Named]) -> String {
    items.iter().map(|n| format!("{:?}", n.name)).collect::<Vec<_>>().join(", ")
}

/// The Railway service name of `service`, refused when it is a database's name.
pub(crate) fn service_name(target: Target<'_>, service: &Service) -> Result<String, Error> {
    let name = target.platform_name(PlatformKind::Railway, &service.name);
    for db in target.app.databases.keys() {
        let db_name = crate::render::database_name(target.app, db)
            .map_err(|e| Error::new(ErrorKind::InvalidConfig, e.message))?;
        if db_name.eq_ignore_ascii_case(&name) {
            return Err(Error::new(
                ErrorKind::InvalidConfig,
                format!(
                    "service `{}` would be the Railway service {name:?}, which is database `{db}`'s: \
                     change `[targets.railway] name_template` or `[targets.railway.databases]` (nothing was changed)",
                    service.name
                ),
            ));
        }
    }
    Ok(name)
}
