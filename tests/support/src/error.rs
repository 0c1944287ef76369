//! The one error type of the harness.

/// Everything that can go wrong while starting or driving a plane.
#[derive(thiserror::Error)]
pub enum Error {
    #[error("failed to find the tools folder: {0}")]
    Tools(String),
    #[error("failed to {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("failed to generate certificates: {0}")]
    Certs(#[from] rcgen::Error),
    #[error("failed to build a client: {0}")]
    Client(String),
    #[error(
        "control plane {name} did not become ready: {reason}\n--- apiserver log tail ---\n{tail}"
    )]
    NotReady {
        name: String,
        reason: String,
        tail: String,
    },
    #[error(
        "control plane {plane}: {component} did not start: {reason}\n--- {component} log tail ---\n{tail}"
    )]
    ComponentFailed {
        plane: String,
        component: String,
        reason: String,
        tail: String,
    },
}

// `unwrap()` in a test prints Debug: make that the readable message, log tail
// included, rather than one escaped line.
impl std::fmt::Debug for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
