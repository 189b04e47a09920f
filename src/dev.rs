//! `dispenser dev`: turns the loaded plan into a development plan: only the
//! selected services, their `depends_on` edges to the others dropped, its
//! own instance id (`<instance>-dev`) and state folder, the proxy on unprivileged ports with
//! certificates from the development CA, containers stopped on exit.

use std::path::Path;

use dispenser_actors::plan::Plan;

/// Suffix of the instance id of development runs (`<instance>-dev`): their
/// containers and networks never carry the production instance's label.
pub const DEV_INSTANCE_SUFFIX: &str = "-dev";
/// Sub-folder of the state dir for development runs (ledger, dev CA).
pub const DEV_STATE_DIR: &str = "dev";

/// What `dispenser dev` asks for.
#[derive(Debug, Clone)]
pub struct DevOptions {
    /// Service names or folders, as typed.
    pub services: Vec<String>,
    pub http_port: u16,
    pub https_port: u16,
}

/// Why the selection cannot be made.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DevError {
    #[error("no service named or in folder `{0}` (known services: {1})")]
    Unknown(String, String),
}

/// Applies the development settings to `plan`.
pub fn select(mut plan: Plan, options: &DevOptions) -> Result<Plan, DevError> {
    // No selection: every service (as ixpantia/dispenser's `dev` does),
    // with every `depends_on` edge kept.
    let mut keep: Vec<String> = if options.services.is_empty() {
        plan.services.keys().cloned().collect()
    } else {
        Vec::new()
    };
    for wanted in &options.services {
        let name = plan
            .services
            .values()
            .find(|service| service.name == *wanted || same_folder(&service.folder, wanted))
            .map(|service| service.name.clone())
            .ok_or_else(|| {
                let known: Vec<&str> = plan.services.keys().map(String::as_str).collect();
                DevError::Unknown(wanted.clone(), known.join(", "))
            })?;
        keep.push(name);
    }
    plan.services.retain(|name, _| keep.contains(name));
    for service in plan.services.values_mut() {
        service.depends_on.retain(|name, _| keep.contains(name));
    }
    plan.settings.instance = format!("{}{DEV_INSTANCE_SUFFIX}", plan.settings.instance);
    plan.settings.state_dir = plan.settings.state_dir.join(DEV_STATE_DIR);
    plan.settings.stop_on_shutdown = true;
    // The development CA serves every route: no ACME in development.
    plan.acme = None;
    if let Some(proxy) = &mut plan.proxy {
        proxy.http_listen.set_port(options.http_port);
        proxy.https_listen.set_port(options.https_port);
    }
    Ok(plan)
}

/// The URLs the development proxy serves, one per route.
pub fn urls(plan: &Plan) -> Vec<String> {
    let Some(proxy) = &plan.proxy else {
        return Vec::new();
    };
    plan.services
        .values()
        .filter_map(|service| service.route.as_ref().map(|route| (service, route)))
        .map(|(service, route)| {
            let port = proxy.https_listen.port();
            format!(
                "{}: https://{}:{port}{}",
                service.name, route.host, route.path
            )
        })
        .collect()
}

/// `api`, `api/`, `./api` or an absolute path name the folder `folder`.
fn same_folder(folder: &Path, wanted: &str) -> bool {
    let wanted = Path::new(wanted.trim_end_matches('/'));
    if wanted.is_absolute() {
        return folder == wanted;
    }
    let wanted: std::path::PathBuf = wanted
        .components()
        .filter(|part| !matches!(part, std::path::Component::CurDir))
        .collect();
    !wanted.as_os_str().is_empty() && folder.ends_with(&wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dispenser_actors::plan::{sample, DependsOn};

    fn options(services: &[&str]) -> DevOptions {
        DevOptions {
            services: services.iter().map(|s| s.to_string()).collect(),
            http_port: 8080,
            https_port: 8443,
        }
    }

    #[test]
    fn no_selection_runs_every_service_with_its_edges() {
        let mut api = sample::service("api", "api:1");
        api.depends_on.insert("db".into(), DependsOn::Healthy);
        let plan = sample::plan("prod", vec![api, sample::service("db", "db:1")]);
        let dev = select(plan, &options(&[])).expect("selects");
        assert_eq!(dev.services.keys().collect::<Vec<_>>(), ["api", "db"]);
        assert_eq!(
            dev.services["api"].depends_on.keys().collect::<Vec<_>>(),
            ["db"]
        );
        assert_eq!(dev.settings.instance, "prod-dev");
    }

    #[test]
    fn selection_prunes_services_and_their_outside_edges() {
        let mut api = sample::service("api", "api:1");
        api.depends_on.insert("db".into(), DependsOn::Healthy);
        api.depends_on.insert("cache".into(), DependsOn::Started);
        let plan = sample::plan(
            "prod",
            vec![
                api,
                sample::service("db", "db:1"),
                sample::service("cache", "cache:1"),
            ],
        );
        // `cache` by name, `api` by folder.
        let dev = select(plan, &options(&["/nonexistent/api", "cache"])).expect("selects");
        assert_eq!(dev.services.keys().collect::<Vec<_>>(), ["api", "cache"]);
        assert_eq!(
            dev.services["api"].depends_on.keys().collect::<Vec<_>>(),
            ["cache"]
        );
        assert_eq!(dev.settings.instance, "prod-dev");
        assert!(dev.settings.stop_on_shutdown);
        assert!(dev.settings.state_dir.ends_with("dev"));
    }

    #[test]
    fn an_unknown_name_lists_the_known_ones() {
        let plan = sample::plan("prod", vec![sample::service("api", "api:1")]);
        let err = select(plan, &options(&["web"])).expect_err("unknown");
        assert_eq!(err, DevError::Unknown("web".into(), "api".into()));
    }

    #[test]
    fn folders_match_by_their_trailing_components() {
        let folder = Path::new("/srv/app/services/api");
        assert!(same_folder(folder, "api"));
        assert!(same_folder(folder, "./services/api/"));
        assert!(same_folder(folder, "/srv/app/services/api"));
        assert!(!same_folder(folder, "pi"));
        assert!(!same_folder(folder, "."));
    }
}
