//! `DockerEngine`: the `Engine` on the real Docker Engine, through bollard.
