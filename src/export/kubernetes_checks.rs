//! Checks of Kubernetes manifests that their schema cannot make (and that
//! `kubernetes-validate` therefore misses): names are DNS labels (CronJobs at
//! most 52 characters), selectors match the labels of their pods, every
//! Service, Ingress and HTTPRoute reaches pods or a Service port that exist, volumes name
//! ConfigMaps and claims that exist, and schedules have 5 fields.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::mapping::{dns_label_problem, MAX_DNS_LABEL};

/// Every problem found, or nothing.
pub fn check(documents: &[&Value]) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut pod_labels: Vec<&serde_json::Map<String, Value>> = Vec::new();
    let mut service_ports: BTreeMap<&str, BTreeSet<i64>> = BTreeMap::new();
    let mut config_maps = BTreeSet::new();
    let mut claims = BTreeSet::new();
    for document in documents {
        let kind = document["kind"].as_str().unwrap_or_default();
        let name = document["metadata"]["name"].as_str().unwrap_or_default();
        let max = if kind == "CronJob" { 52 } else { MAX_DNS_LABEL };
        if let Some(problem) = dns_label_problem(name, max) {
            problems.push(format!(
                "{kind} `{name}`: the name is no DNS label: {problem}"
            ));
        }
        if kind == "Service" && !name.starts_with(|c: char| c.is_ascii_lowercase()) {
            problems.push(format!(
                "Service `{name}`: the name must start with a letter"
            ));
        }
        match kind {
            "ConfigMap" => {
                config_maps.insert(name);
            }
            "PersistentVolumeClaim" => {
                claims.insert(name);
            }
            "Service" => {
                let ports = document["spec"]["ports"]
                    .as_array()
                    .map(|ports| {
                        ports
                            .iter()
                            .filter_map(|port| port["port"].as_i64())
                            .collect()
                    })
                    .unwrap_or_default();
                service_ports.insert(name, ports);
            }
            _ => {}
        }
        if let Some(template) = pod_template(document) {
            if let Some(labels) = template["metadata"]["labels"].as_object() {
                pod_labels.push(labels);
            }
        }
    }
    for document in documents {
        let kind = document["kind"].as_str().unwrap_or_default();
        let name = document["metadata"]["name"].as_str().unwrap_or_default();
        if kind == "Deployment" {
            let selector = document["spec"]["selector"]["matchLabels"].as_object();
            let labels = document["spec"]["template"]["metadata"]["labels"].as_object();
            match (selector, labels) {
                (Some(selector), Some(labels)) if subset(selector, labels) => {}
                _ => problems.push(format!(
                    "Deployment `{name}`: spec.selector.matchLabels does not match the pod template's labels"
                )),
            }
        }
        if kind == "Service" {
            match document["spec"]["selector"].as_object() {
                Some(selector) if pod_labels.iter().any(|labels| subset(selector, labels)) => {}
                _ => problems.push(format!(
                    "Service `{name}`: its selector matches no pod template"
                )),
            }
        }
        if kind == "Ingress" {
            for backend in ingress_backends(document) {
                let service = backend["name"].as_str().unwrap_or_default();
                let port = backend["port"]["number"].as_i64().unwrap_or_default();
                if !service_ports
                    .get(service)
                    .is_some_and(|ports| ports.contains(&port))
                {
                    problems.push(format!(
                        "Ingress `{name}`: backend `{service}:{port}` is no port of a Service"
                    ));
                }
            }
        }
        if kind == "HTTPRoute" {
            let refs = document["spec"]["rules"].as_array().into_iter().flatten();
            for backend in
                refs.flat_map(|rule| rule["backendRefs"].as_array().into_iter().flatten())
            {
                let service = backend["name"].as_str().unwrap_or_default();
                let port = backend["port"].as_i64().unwrap_or_default();
                if !service_ports
                    .get(service)
                    .is_some_and(|ports| ports.contains(&port))
                {
                    problems.push(format!(
                        "HTTPRoute `{name}`: backend `{service}:{port}` is no port of a Service"
                    ));
                }
            }
        }
        if kind == "NetworkPolicy" {
            let selector = document["spec"]["podSelector"]["matchLabels"].as_object();
            if !selector
                .is_some_and(|selector| pod_labels.iter().any(|labels| subset(selector, labels)))
            {
                problems.push(format!(
                    "NetworkPolicy `{name}`: its podSelector matches no pod template"
                ));
            }
        }
        if kind == "CronJob" {
            let schedule = document["spec"]["schedule"].as_str().unwrap_or_default();
            let fields = schedule.split_whitespace().count();
            if fields != 5 {
                problems.push(format!(
                    "CronJob `{name}`: schedule `{schedule}` has {fields} fields, not 5"
                ));
            }
        }
        if let Some(template) = pod_template(document) {
            for volume in template["spec"]["volumes"].as_array().into_iter().flatten() {
                if let Some(map) = volume["configMap"]["name"].as_str() {
                    if !config_maps.contains(map) {
                        problems.push(format!("{kind} `{name}`: ConfigMap `{map}` is not written"));
                    }
                }
                if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
                    if !claims.contains(claim) {
                        problems.push(format!(
                            "{kind} `{name}`: PersistentVolumeClaim `{claim}` is not written"
                        ));
                    }
                }
            }
        }
    }
    match problems.is_empty() {
        true => Ok(()),
        false => Err(problems),
    }
}

/// The pod template of a Deployment, Job or CronJob.
fn pod_template(document: &Value) -> Option<&Value> {
    match document["kind"].as_str()? {
        "Deployment" | "Job" => Some(&document["spec"]["template"]),
        "CronJob" => Some(&document["spec"]["jobTemplate"]["spec"]["template"]),
        _ => None,
    }
}

fn ingress_backends(document: &Value) -> Vec<&Value> {
    document["spec"]["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|rule| rule["http"]["paths"].as_array().into_iter().flatten())
        .map(|path| &path["backend"]["service"])
        .collect()
}

fn subset(
    selector: &serde_json::Map<String, Value>,
    labels: &serde_json::Map<String, Value>,
) -> bool {
    !selector.is_empty()
        && selector
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn deployment(selector: &str, label: &str) -> Value {
        json!({"kind": "Deployment", "metadata": {"name": "web"}, "spec": {
            "selector": {"matchLabels": {"app": selector}},
            "template": {"metadata": {"labels": {"app": label}}, "spec": {}},
        }})
    }

    #[test]
    fn a_selector_that_misses_its_labels_is_found() {
        assert!(check(&[&deployment("web", "web")]).is_ok());
        let problems = check(&[&deployment("web", "api")]).unwrap_err();
        assert!(problems[0].contains("matchLabels"), "{problems:?}");
    }

    #[test]
    fn names_services_ingresses_and_schedules_are_checked() {
        let service = json!({"kind": "Service", "metadata": {"name": "Web_1"}, "spec": {
            "selector": {"app": "other"}, "ports": [{"port": 80}]}});
        let ingress = json!({"kind": "Ingress", "metadata": {"name": "web"}, "spec": {"rules": [{"http": {"paths": [
            {"backend": {"service": {"name": "web", "port": {"number": 81}}}}]}}]}});
        let cron = json!({"kind": "CronJob", "metadata": {"name": "a".repeat(53)}, "spec": {
            "schedule": "0 0 3 * * *", "jobTemplate": {"spec": {"template": {"metadata": {"labels": {"app": "x"}}, "spec": {
                "volumes": [{"name": "v", "configMap": {"name": "gone"}}]}}}}}});
        let problems = check(&[&deployment("web", "web"), &service, &ingress, &cron]).unwrap_err();
        let all = problems.join("\n");
        for expected in [
            "Service `Web_1`: the name is no DNS label",
            "Service `Web_1`: its selector matches no pod template",
            "backend `web:81`",
            "more than 52",
            "has 6 fields",
            "ConfigMap `gone` is not written",
        ] {
            assert!(all.contains(expected), "{expected} not in {all}");
        }
    }
}
