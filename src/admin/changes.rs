//! The admin API's write side: backend weight and state, adding and removing backends, and
//! reloading the config file. Each change is checked like the config file, applied to a copy
//! of the running config and swapped in whole by a reload, so it is atomic, logged, and
//! counted in the config generation; a bad request changes nothing.

use std::net::{SocketAddr, SocketAddrV4, SocketAddrV6};

use bytes::Bytes;
use http::{Method, StatusCode};
use serde::Deserialize;
use tracing::info;

use super::{error, json, Reply};
use crate::config::{self, BackendState, Config};
use crate::server::ApplyError;
use crate::Server;

/// `PATCH /api/v1/pools/{pool}/backends/{backend}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BackendPatch {
    weight: Option<i64>,
    state: Option<String>,
}

/// `POST /api/v1/pools/{pool}/backends`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NewBackend {
    name: String,
    address: String,
    weight: Option<i64>,
    backup: Option<bool>,
    state: Option<String>,
}

const MAX_WEIGHT: i64 = 1000;

/// Answers a change request; `rest` is the path after `/api/v1`.
pub(super) async fn handle(
    server: &Server,
    method: &Method,
    rest: &[String],
    body: &Bytes,
    client: SocketAddr,
) -> Reply {
    let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
    // What the path names must exist (404); `apply` checks again under the reload lock.
    let missing = match rest.as_slice() {
        ["pools", pool, "backends", backend] => missing(server, pool, Some(backend)),
        ["pools", pool, "backends"] => missing(server, pool, None),
        _ => None,
    };
    if let Some(reason) = missing {
        return error(StatusCode::NOT_FOUND, &reason);
    }
    let (what, result) = match (method, rest.as_slice()) {
        (&Method::POST, ["reload"]) => return reload(server, client).await,
        (&Method::PATCH, ["pools", pool, "backends", backend]) => {
            let patch: BackendPatch = match parse(body) {
                Ok(p) => p,
                Err(reply) => return *reply,
            };
            let mut set = Vec::new();
            if let Some(w) = patch.weight {
                set.push(format!("weight={w}"));
            }
            if let Some(s) = &patch.state {
                set.push(format!("state={s}"));
            }
            let what = format!("pool {pool} backend {backend}: {}", set.join(" "));
            let result = server
                .apply(|c| patch_backend(c, pool, backend, &patch))
                .await;
            (what, result)
        }
        (&Method::POST, ["pools", pool, "backends"]) => {
            let new: NewBackend = match parse(body) {
                Ok(p) => p,
                Err(reply) => return *reply,
            };
            let what = format!("pool {pool}: add backend {} at {}", new.name, new.address);
            let result = server.apply(|c| add_backend(c, pool, &new)).await;
            (what, result)
        }
        (&Method::DELETE, ["pools", pool, "backends", backend]) => {
            let what = format!("pool {pool}: remove backend {backend}");
            let result = server.apply(|c| remove_backend(c, pool, backend)).await;
            (what, result)
        }
        _ => {
            return error(
                StatusCode::NOT_FOUND,
                "no such change; see docs/operations.md for the admin API",
            )
        }
    };
    match result {
        Ok(summary) => {
            info!(%client, generation = summary.generation, "admin: applied {what}");
            json(
                StatusCode::OK,
                &serde_json::json!({ "applied": what, "generation": summary.generation }),
            )
        }
        Err(ApplyError::Invalid(reason)) => {
            info!(%client, reason, "admin: refused {what}");
            error(StatusCode::BAD_REQUEST, &reason)
        }
        Err(ApplyError::Refused(e)) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

/// Why the pool (and backend) a path names does not exist, if it does not.
fn missing(server: &Server, pool: &str, backend: Option<&str>) -> Option<String> {
    let config = server.config();
    let Some(p) = config.pools.iter().find(|p| p.name == pool) else {
        return Some(format!("no pool `{pool}`"));
    };
    let backend = backend?;
    (!p.backends.iter().any(|b| b.name == backend))
        .then(|| format!("pool `{pool}` has no backend `{backend}`"))
}

async fn reload(server: &Server, client: SocketAddr) -> Reply {
    let Some(path) = server.source() else {
        return error(
            StatusCode::BAD_REQUEST,
            "this terminus runs without a config file (the embedded default): nothing to reload",
        );
    };
    info!(%client, config = %path.display(), "admin: reload requested");
    match server.reload_file(&path).await {
        Ok(s) => json(
            StatusCode::OK,
            &serde_json::json!({
                "reloaded": path.display().to_string(),
                "generation": s.generation,
                "listeners_kept": s.kept,
                "listeners_bound": s.bound,
                "listeners_stopped": s.stopped,
            }),
        ),
        Err(e) => error(StatusCode::BAD_REQUEST, &e.to_string()),
    }
}

fn parse<T: serde::de::DeserializeOwned>(body: &Bytes) -> Result<T, Box<Reply>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(error(
            StatusCode::BAD_REQUEST,
            &format!("invalid JSON body: {e}"),
        ))
    })
}

fn pool_mut<'c>(c: &'c mut Config, pool: &str) -> Result<&'c mut config::Pool, String> {
    c.pools
        .iter_mut()
        .find(|p| p.name == pool)
        .ok_or_else(|| format!("no pool `{pool}`"))
}

fn weight(w: i64) -> Result<u32, String> {
    if (0..=MAX_WEIGHT).contains(&w) {
        Ok(w as u32)
    } else {
        Err(format!(
            "weight = {w} is out of range; expected an integer from 0 to {MAX_WEIGHT}"
        ))
    }
}

fn state(s: &str) -> Result<BackendState, String> {
    BackendState::parse(s).ok_or_else(|| {
        format!("unknown state `{s}`; expected \"enabled\", \"draining\" or \"disabled\"")
    })
}

fn patch_backend(
    c: &mut Config,
    pool: &str,
    backend: &str,
    patch: &BackendPatch,
) -> Result<(), String> {
    if patch.weight.is_none() && patch.state.is_none() {
        return Err("nothing to change; expected `weight` and/or `state`".into());
    }
    let p = pool_mut(c, pool)?;
    let b = p
        .backends
        .iter_mut()
        .find(|b| b.name == backend)
        .ok_or_else(|| format!("pool `{pool}` has no backend `{backend}`"))?;
    let new_weight = patch.weight.map(weight).transpose()?;
    let new_state = patch.state.as_deref().map(state).transpose()?;
    if let Some(w) = new_weight {
        b.weight = w;
    }
    if let Some(s) = new_state {
        b.state = s;
    }
    Ok(())
}

/// An IP address and port; host names are resolved only when a config file is loaded.
fn address(s: &str) -> Result<SocketAddr, String> {
    s.parse::<SocketAddr>()
        .or_else(|_| s.parse::<SocketAddrV4>().map(SocketAddr::V4))
        .or_else(|_| s.parse::<SocketAddrV6>().map(SocketAddr::V6))
        .map_err(|_| {
            format!("`{s}` is not an IP address and port such as 10.0.0.5:8080 or [::1]:8080")
        })
        .and_then(|a| {
            if a.port() == 0 {
                Err(format!("`{s}`: port 0 cannot be connected to"))
            } else {
                Ok(a)
            }
        })
}

fn add_backend(c: &mut Config, pool: &str, new: &NewBackend) -> Result<(), String> {
    if !config::valid_name(&new.name) {
        return Err(format!(
            "`{}` is not a valid backend name; {}",
            new.name,
            config::NAME_HINT
        ));
    }
    let address = address(&new.address)?;
    let weight = weight(new.weight.unwrap_or(1))?;
    let state = new
        .state
        .as_deref()
        .map(state)
        .transpose()?
        .unwrap_or_default();
    let p = pool_mut(c, pool)?;
    if p.backends.iter().any(|b| b.name == new.name) {
        return Err(format!(
            "pool `{pool}` already has a backend named `{}`",
            new.name
        ));
    }
    p.backends.push(config::Backend {
        name: new.name.clone(),
        address,
        weight,
        backup: new.backup.unwrap_or(false),
        state,
    });
    Ok(())
}

fn remove_backend(c: &mut Config, pool: &str, backend: &str) -> Result<(), String> {
    let p = pool_mut(c, pool)?;
    let before = p.backends.len();
    p.backends.retain(|b| b.name != backend);
    if p.backends.len() == before {
        return Err(format!("pool `{pool}` has no backend `{backend}`"));
    }
    if p.backends.is_empty() {
        return Err(format!(
            "`{backend}` is the last backend of pool `{pool}`; a pool needs at least one"
        ));
    }
    if p.backends.iter().all(|b| b.backup) {
        return Err(format!(
            "`{backend}` is the last primary backend of pool `{pool}`; a pool needs a backend that is not a backup"
        ));
    }
    Ok(())
}
