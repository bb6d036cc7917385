//! A client for AWS JSON 1.1 APIs (SageMaker, CloudWatch Logs): one POST per
//! operation, the operation in `X-Amz-Target`. The host signs each request
//! (SigV4, from the step operator's `http-credential`); this side names the
//! signing scope with `x-stepbox-aws-scope` and never holds a key.

use serde_json::Value;
use stepbox_guest::http::{HttpError, Request};

/// One AWS service at one endpoint.
pub struct AwsApi {
    /// `https://api.sagemaker.us-east-1.amazonaws.com/`, or an override.
    pub endpoint: String,
    /// `SageMaker`, `Logs_20140328`.
    pub target_prefix: &'static str,
    /// `us-east-1/sagemaker`.
    pub scope: String,
}

/// Why a call failed.
#[derive(Debug)]
pub enum AwsError {
    /// The service answered with an error: its code (`ValidationException`) and message.
    Service { status: u16, code: String, message: String },
    /// No answer: the host refused the request or it could not be sent.
    Transport(HttpError),
}

impl AwsError {
    /// The service's error code, if it answered.
    pub fn code(&self) -> Option<&str> {
        match self {
            AwsError::Service { code, .. } => Some(code),
            AwsError::Transport(_) => None,
        }
    }

    /// Whether trying again later may work (throttling, 5xx, a dropped connection).
    pub fn is_transient(&self) -> bool {
        match self {
            AwsError::Service { status, code, .. } => {
                *status >= 500 || code.contains("Throttling") || code == "TooManyRequestsException"
            }
            AwsError::Transport(error) => error.is_transient(),
        }
    }
}

impl std::fmt::Display for AwsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AwsError::Service { status, code, message } => write!(f, "{code} (HTTP {status}): {message}"),
            AwsError::Transport(error) => write!(f, "{error}"),
        }
    }
}

impl AwsApi {
    /// Call `operation` with `input`; the decoded output (`{}` when empty).
    pub fn call(&self, operation: &str, input: &Value) -> Result<Value, AwsError> {
        let response = Request::post(&self.endpoint)
            .header("content-type", "application/x-amz-json-1.1")
            .header("x-amz-target", &format!("{}.{operation}", self.target_prefix))
            .header("x-stepbox-aws-scope", &self.scope)
            .body(input.to_string().into_bytes())
            .send()
            .map_err(AwsError::Transport)?;
        if response.is_success() {
            if response.body.iter().all(u8::is_ascii_whitespace) {
                return Ok(Value::Object(Default::default()));
            }
            // moto answers some calls as text/html: decode whatever the content type says.
            return response.json().map_err(AwsError::Transport);
        }
        let text = response.text();
        let body: Value = serde_json::from_slice(&response.body).unwrap_or(Value::Null);
        let (code, message) = match xml_error(&text) {
            // Some front ends (and moto's authentication) answer in the query protocol's XML.
            Some((code, message)) if body.is_null() => (code, message),
            _ => (error_code(response.header("x-amzn-errortype"), &body), error_message(&body, &text)),
        };
        Err(AwsError::Service { status: response.status, code, message })
    }
}

/// The error code as botocore reads it: `x-amzn-ErrorType` or `__type`,
/// without a `namespace#` prefix or a `:detail` suffix.
pub fn error_code(header: Option<&str>, body: &Value) -> String {
    let raw = header.or_else(|| body.get("__type").and_then(Value::as_str)).unwrap_or("UnknownError");
    let after_hash = raw.rsplit('#').next().unwrap_or(raw);
    after_hash.split(':').next().unwrap_or(after_hash).to_owned()
}

/// The message, from `message` or `Message`, else the start of the body.
pub fn error_message(body: &Value, text: &str) -> String {
    body.get("message")
        .or_else(|| body.get("Message"))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| text.chars().take(300).collect())
}

/// `<Code>` and `<Message>` of an XML `ErrorResponse`.
fn xml_error(text: &str) -> Option<(String, String)> {
    let element = |tag: &str| {
        let start = text.find(&format!("<{tag}>"))? + tag.len() + 2;
        let end = text[start..].find(&format!("</{tag}>"))? + start;
        Some(text[start..end].to_owned())
    };
    Some((element("Code")?, element("Message").unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_decode_the_way_botocore_does() {
        let body = serde_json::json!({ "__type": "com.amazon.coral.validate#ValidationException", "Message": "bad" });
        assert_eq!(error_code(None, &body), "ValidationException");
        assert_eq!(error_code(Some("ResourceInUse:http://internal"), &Value::Null), "ResourceInUse");
        assert_eq!(error_message(&body, ""), "bad");
        assert_eq!(error_message(&serde_json::json!({ "message": "lower" }), ""), "lower");
        assert_eq!(error_message(&Value::Null, "<html>500</html>"), "<html>500</html>");
        let xml = "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>no</Message></Error></Errors></ErrorResponse>";
        assert_eq!(xml_error(xml), Some(("SignatureDoesNotMatch".to_owned(), "no".to_owned())));
        assert_eq!(xml_error("<html>500</html>"), None);
    }
}
