//! API Gateway (REST) resource matching: a literal segment beats `{param}`,
//! which beats the greedy `{proxy+}`; the method must then exist on the
//! matched resource (or `ANY`), else API Gateway answers "Missing
//! Authentication Token".

use std::collections::BTreeMap;

use crate::spec::RouteSpec;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seg {
    Lit(String),
    Param(String),
    Greedy(String),
}

#[derive(Debug, Clone)]
struct Resource {
    path: String,
    segs: Vec<Seg>,
    /// method (upper case, or ANY) -> index into routes
    methods: BTreeMap<String, usize>,
}

#[derive(Debug, Clone)]
pub struct Router {
    routes: Vec<RouteSpec>,
    resources: Vec<Resource>,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Matched<'a> {
    pub route: &'a RouteSpec,
    /// Resource path template, e.g. `/v1/items/{sku}`.
    pub resource: &'a str,
    pub path_params: BTreeMap<String, String>,
}

fn split(path: &str) -> Vec<&str> {
    path.trim_matches('/')
        .split('/')
        .filter(|s| !s.is_empty())
        .collect()
}

impl Router {
    pub fn new(routes: Vec<RouteSpec>) -> Self {
        let mut resources: Vec<Resource> = Vec::new();
        for (i, r) in routes.iter().enumerate() {
            let idx = match resources.iter().position(|res| res.path == r.path) {
                Some(idx) => idx,
                None => {
                    let segs = split(&r.path)
                        .into_iter()
                        .map(|s| {
                            if let Some(inner) =
                                s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))
                            {
                                match inner.strip_suffix('+') {
                                    Some(name) => Seg::Greedy(name.to_string()),
                                    None => Seg::Param(inner.to_string()),
                                }
                            } else {
                                Seg::Lit(s.to_string())
                            }
                        })
                        .collect();
                    resources.push(Resource {
                        path: r.path.clone(),
                        segs,
                        methods: BTreeMap::new(),
                    });
                    resources.len() - 1
                }
            };
            resources[idx].methods.insert(r.method.to_uppercase(), i);
        }
        Router { routes, resources }
    }

    pub fn routes(&self) -> &[RouteSpec] {
        &self.routes
    }

    /// Match a request path (already without the stage, percent-decoded
    /// segments) and method. `None` = no resource or no such method.
    pub fn find(&self, method: &str, path: &str) -> Option<Matched<'_>> {
        let segs = split(path);
        let mut best: Option<(Vec<u8>, usize, BTreeMap<String, String>)> = None;
        for (ri, res) in self.resources.iter().enumerate() {
            if let Some((score, params)) = match_segs(&res.segs, &segs)
                && best.as_ref().is_none_or(|(b, _, _)| score > *b)
            {
                best = Some((score, ri, params));
            }
        }
        let (_, ri, path_params) = best?;
        let res = &self.resources[ri];
        let idx = res
            .methods
            .get(&method.to_uppercase())
            .or_else(|| res.methods.get("ANY"))?;
        Some(Matched {
            route: &self.routes[*idx],
            resource: &res.path,
            path_params,
        })
    }
}

/// Score: per segment 3 = literal, 2 = param, 1 = greedy; compared
/// lexicographically so the most specific resource wins at the first
/// segment where two candidates differ (API Gateway's precedence).
fn match_segs(pattern: &[Seg], segs: &[&str]) -> Option<(Vec<u8>, BTreeMap<String, String>)> {
    let mut score = Vec::with_capacity(pattern.len());
    let mut params = BTreeMap::new();
    for (i, p) in pattern.iter().enumerate() {
        match p {
            Seg::Greedy(name) => {
                if i >= segs.len() {
                    return None; // {proxy+} needs at least one segment
                }
                params.insert(name.clone(), segs[i..].join("/"));
                score.push(1);
                return Some((score, params));
            }
            Seg::Lit(l) => {
                if segs.get(i) != Some(&l.as_str()) {
                    return None;
                }
                score.push(3);
            }
            Seg::Param(name) => {
                let v = segs.get(i)?;
                params.insert(name.clone(), (*v).to_string());
                score.push(2);
            }
        }
    }
    (pattern.len() == segs.len()).then_some((score, params))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(method: &str, path: &str) -> RouteSpec {
        RouteSpec {
            method: method.into(),
            path: path.into(),
            function: "F".into(),
            authorizer: None,
            api_key_required: false,
            mock: None,
        }
    }

    fn router() -> Router {
        Router::new(vec![
            r("GET", "/v1/health"),
            r("GET", "/v1/items"),
            r("POST", "/v1/items"),
            r("GET", "/v1/items/{sku}"),
            r("PUT", "/v1/items/{sku}"),
            r("GET", "/v1/items/export"),
            r("POST", "/v1/items/{sku}/adjustments"),
            r("ANY", "/files/{proxy+}"),
            r("GET", "/"),
        ])
    }

    #[test]
    fn literal_beats_param() {
        let rt = router();
        let m = rt.find("GET", "/v1/items/export").unwrap();
        assert_eq!(m.resource, "/v1/items/export");
        assert!(m.path_params.is_empty());
        let m = rt.find("GET", "/v1/items/ABC-1").unwrap();
        assert_eq!(m.resource, "/v1/items/{sku}");
        assert_eq!(m.path_params["sku"], "ABC-1");
    }

    #[test]
    fn method_must_exist_on_the_matched_resource() {
        let rt = router();
        // /v1/items/export matches the literal resource, which has no PUT:
        // API Gateway does not fall back to /v1/items/{sku}.
        assert!(rt.find("PUT", "/v1/items/export").is_none());
        assert!(rt.find("DELETE", "/v1/items").is_none());
        assert_eq!(rt.find("put", "/v1/items/x").unwrap().route.method, "PUT");
    }

    #[test]
    fn nested_and_unknown_paths() {
        let rt = router();
        let m = rt.find("POST", "/v1/items/a/adjustments").unwrap();
        assert_eq!(m.path_params["sku"], "a");
        assert!(rt.find("GET", "/v1/items/a/b").is_none());
        assert!(rt.find("GET", "/v2/items").is_none());
        assert_eq!(rt.find("GET", "/").unwrap().resource, "/");
        assert_eq!(rt.find("GET", "/v1/items/").unwrap().resource, "/v1/items");
    }

    #[test]
    fn greedy_proxy_and_any() {
        let rt = router();
        let m = rt.find("DELETE", "/files/a/b/c.txt").unwrap();
        assert_eq!(m.resource, "/files/{proxy+}");
        assert_eq!(m.path_params["proxy"], "a/b/c.txt");
        assert!(rt.find("GET", "/files").is_none());
    }
}
