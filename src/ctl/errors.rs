//! Why a call failed, told so that an operator knows what to do: a node
//! that cannot be reached (try the next), one that closed the connection
//! (a refused certificate, plain text to a TLS port), or the cluster's own
//! answer.

use crate::tls::transport::FirstError;

pub(crate) fn is_unreachable(status: &tonic::Status) -> bool {
    // UNAVAILABLE from a reachable node means "no quorum": that is the
    // cluster's answer, not a reason to try another endpoint. A connection
    // that breaks mid-call (a node killed just after it accepted) is UNKNOWN
    // "transport error"; a write retried elsewhere keeps its request id and
    // is applied once.
    matches!(
        status.code(),
        tonic::Code::Unavailable | tonic::Code::Unknown
    ) && status.message().contains("transport")
}

/// Whether a call failed because its connection went away under it (h2
/// reports a connection closed mid-handshake as a protocol error, tonic
/// the call as cancelled).
pub(crate) fn connection_lost(status: &tonic::Status) -> bool {
    let text = describe(status);
    match status.code() {
        tonic::Code::Cancelled => true,
        // h2's PROTOCOL_ERROR maps to INTERNAL.
        tonic::Code::Unknown | tonic::Code::Internal => {
            text.contains("h2 protocol error") || text.contains("connection")
        }
        _ => false,
    }
}

/// Why a call on a connection failed, as well as this side knows: a node
/// that refuses a client certificate, or gets plain text on a TLS port,
/// closes the connection, and the call reports only that.
pub(crate) fn failed_why(status: &tonic::Status, errors: &FirstError, tls: bool) -> String {
    let text = describe(status);
    let closed = ["broken pipe", "reset", "h2 protocol", "connection error"]
        .iter()
        .any(|sign| text.contains(sign));
    match errors.get() {
        Some(error) => format!(
            "the node closed the connection ({error}): it did not take this client \
             certificate (another CA, expired, or no raftlb identity); its log says which"
        ),
        None if !tls && (closed || connection_lost(status)) => format!(
            "the node closed the connection ({text}): it may take mutual TLS only; give \
             --ca, --cert and --key (or RAFTLB_CA, RAFTLB_CERT, RAFTLB_KEY, or ca, cert and \
             key in ctl.toml)"
        ),
        None => text,
    }
}

/// An error with its causes: "transport error: …: invalid peer
/// certificate: UnknownIssuer".
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let line = cause.to_string();
        if !text.contains(&line) {
            text = format!("{text}: {line}");
        }
        source = cause.source();
    }
    text
}

/// A status's message and the causes behind it.
pub(crate) fn describe(status: &tonic::Status) -> String {
    match std::error::Error::source(status) {
        Some(source) => {
            let causes = error_chain(source);
            if causes.contains(status.message()) {
                causes
            } else {
                format!("{}: {causes}", status.message())
            }
        }
        None => status.message().to_string(),
    }
}

pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    match code {
        tonic::Code::InvalidArgument => "invalid argument",
        tonic::Code::NotFound => "not found",
        tonic::Code::AlreadyExists => "already exists",
        tonic::Code::FailedPrecondition => "refused",
        tonic::Code::Unavailable => "unavailable",
        tonic::Code::Unauthenticated => "unauthenticated",
        tonic::Code::PermissionDenied => "permission denied",
        tonic::Code::DeadlineExceeded => "timed out",
        _ => "error",
    }
}
