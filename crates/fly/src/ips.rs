//! Public IP addresses for a service that takes traffic, the way flyctl's first deploy gives
//! them: a shared IPv4 and a dedicated IPv6 (`POST /apps/{app}/ip_assignments` with
//! `{"type": "shared_v4"}` and `{"type": "v6"}`).
//!
//! A service with a `port` is an `http_service` on Fly (see [`crate::render`]): without a public
//! address nobody can reach it. Every deploy of such a service reads the app's addresses
//! (`GET /apps/{app}/ip_assignments`, one cheap read) and allocates only what is missing: an app
//! with any public IPv4 (shared or dedicated) and a public IPv6 is left alone, so the addresses
//! come with the first deploy, also of an app `secrets sync` created, and never twice. A worker
//! (no port) gets none. Addresses are never released.
//!
//! Nothing here fails a deploy: the machines do not depend on the addresses. When Fly refuses
//! (a token that may deploy but not allocate addresses), or the calls fail, a warning names the
//! exact `fly ips allocate-…` commands to run, and the rollout goes on. The next deploy tries
//! again.

use shipit_core::Events;

use crate::client::{FlyClient, IpAssignment, IpType};
use crate::error::FlyError;

/// What a service with a port needs and the app lacks, in the order they are allocated.
pub(crate) fn missing(ips: &[IpAssignment]) -> Vec<IpType> {
    let has = |kinds: &[IpType]| ips.iter().any(|ip| kinds.contains(&ip.kind()));
    let mut out = Vec::new();
    if !has(&[IpType::SharedV4, IpType::V4]) {
        out.push(IpType::SharedV4);
    }
    if !has(&[IpType::V6]) {
        out.push(IpType::V6);
    }
    out
}

/// The flyctl command that allocates `kind` to `app`.
pub(crate) fn command(app: &str, kind: IpType) -> String {
    match kind {
        IpType::SharedV4 => format!("fly ips allocate-v4 --shared -a {app}"),
        IpType::V4 => format!("fly ips allocate-v4 -a {app}"),
        IpType::V6 => format!("fly ips allocate-v6 -a {app}"),
        IpType::PrivateV6 => format!("fly ips allocate-v6 --private -a {app}"),
        IpType::EgressV4 | IpType::EgressV6 => format!("fly ips allocate-egress -a {app}"),
    }
}

/// `` `cmd one` and `cmd two` ``.
fn commands(app: &str, kinds: &[IpType]) -> String {
    let quoted: Vec<String> = kinds.iter().map(|k| format!("`{}`", command(app, *k))).collect();
    quoted.join(" and ")
}

/// `shared IPv4 and dedicated IPv6`.
fn described(kinds: &[IpType]) -> String {
    let words: Vec<&str> = kinds.iter().map(|k| k.describe()).collect();
    words.join(" and ")
}

/// Why it went wrong: a refusal as Fly's status and message (the error's own text says to check
/// the token, which is not the point here), anything else as the error says it.
fn why(e: &FlyError) -> String {
    match e {
        FlyError::Unauthorized { status, message } => format!("Fly refused it with this token ({status}: {message})"),
        other => other.to_string(),
    }
}

/// The warning for the `kinds` that `app` still lacks after `e`.
pub(crate) fn warning(app: &str, kinds: &[IpType], e: &FlyError) -> String {
    let then = match e {
        FlyError::Unauthorized { .. } => "with a token that may manage IP addresses",
        _ => "or deploy again",
    };
    format!(
        "{app} has no public {} address: allocating failed: {}. Run {} ({then})",
        described(kinds),
        why(e),
        commands(app, kinds),
    )
}

/// Gives `app` the public addresses it lacks (see the module docs). `service` names the events.
pub(crate) async fn ensure_public(client: &FlyClient, app: &str, service: &str, events: &Events) {
    let ips = match client.list_ip_assignments(app).await {
        Ok(ips) => ips,
        Err(e) => {
            let all = [IpType::SharedV4, IpType::V6];
            events.warn(
                Some(service),
                format!(
                    "could not read the IP addresses of {app}: {}. If it has none, run {}",
                    why(&e),
                    commands(app, &all)
                ),
            );
            return;
        }
    };
    let missing = missing(&ips);
    for (i, kind) in missing.iter().enumerate() {
        match client.assign_ip(app, *kind).await {
            Ok(ip) => {
                let address = ip.ip.as_deref().unwrap_or("(address not shown)");
                events.step(service, format!("allocated a {} address to {app}: {address}", kind.describe()));
            }
            Err(e) => {
                // The rest would meet the same refusal: name them all, send no more.
                events.warn(Some(service), warning(app, missing.get(i..).unwrap_or_default(), &e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(addr: &str, shared: bool) -> IpAssignment {
        IpAssignment { ip: Some(addr.to_string()), shared: Some(shared), ..IpAssignment::default() }
    }

    #[test]
    fn kinds_from_the_address_and_flags() {
        assert_eq!(ip("66.241.124.10", true).kind(), IpType::SharedV4);
        assert_eq!(ip("137.66.1.2", false).kind(), IpType::V4);
        assert_eq!(ip("2a09:8280:1::1", false).kind(), IpType::V6);
        assert_eq!(ip("fdaa:0:1::3", false).kind(), IpType::PrivateV6);
        let mut egress = ip("2a09:8280:1::9", false);
        egress.egress = Some(true);
        assert_eq!(egress.kind(), IpType::EgressV6);
    }

    #[test]
    fn only_what_is_missing() {
        assert_eq!(missing(&[]), [IpType::SharedV4, IpType::V6]);
        assert_eq!(missing(&[ip("137.66.1.2", false)]), [IpType::V6]);
        assert_eq!(missing(&[ip("66.241.124.10", true), ip("2a09:8280:1::1", false)]), []);
        // A private or egress address is not a public one.
        let mut egress = ip("137.66.9.9", false);
        egress.egress = Some(true);
        assert_eq!(missing(&[ip("fdaa:0:1::3", false), egress]), [IpType::SharedV4, IpType::V6]);
    }

    #[test]
    fn a_refusal_names_the_commands() {
        let e = FlyError::Unauthorized { status: 403, message: "unauthorized".into() };
        let w = warning("shop-api-staging", &[IpType::SharedV4, IpType::V6], &e);
        assert_eq!(
            w,
            "shop-api-staging has no public shared IPv4 and dedicated IPv6 address: allocating failed: Fly \
             refused it with this token (403: unauthorized). Run \
             `fly ips allocate-v4 --shared -a shop-api-staging` and `fly ips allocate-v6 -a shop-api-staging` \
             (with a token that may manage IP addresses)"
        );
    }
}
