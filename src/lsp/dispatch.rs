//! Routing a message to its typed handler, in the style of rust-analyzer's
//! `RequestDispatcher`: params are deserialised once, bad params answer
//! InvalidParams, a handler's error becomes the response, and a method no
//! handler claims answers MethodNotFound (notifications: is dropped).

use lsp_server::{ErrorCode, Notification, Request, RequestId, Response};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why a handler could not answer: the JSON-RPC error it becomes.
#[derive(Debug)]
pub struct HandlerError {
    pub code: ErrorCode,
    pub message: String,
}

impl HandlerError {
    pub fn invalid_params(message: impl Into<String>) -> HandlerError {
        HandlerError { code: ErrorCode::InvalidParams, message: message.into() }
    }
}

/// One request on its way to the handler of its method.
pub struct RequestDispatcher<'a, S> {
    id: RequestId,
    method: String,
    /// Taken by the handler that claims the request.
    params: Option<serde_json::Value>,
    response: Option<Response>,
    state: &'a mut S,
}

impl<'a, S> RequestDispatcher<'a, S> {
    pub fn new(req: Request, state: &'a mut S) -> Self {
        RequestDispatcher { id: req.id, method: req.method, params: Some(req.params), response: None, state }
    }

    /// Answers the request with `handler` when its method is `R`'s.
    pub fn on<R>(&mut self, handler: fn(&mut S, R::Params) -> Result<R::Result, HandlerError>) -> &mut Self
    where
        R: lsp_types::request::Request,
        R::Params: DeserializeOwned,
        R::Result: Serialize,
    {
        if self.method != R::METHOD {
            return self;
        }
        let Some(params) = self.params.take() else { return self };
        let id = self.id.clone();
        self.response = Some(match serde_json::from_value::<R::Params>(params) {
            Err(e) => Response::new_err(id, ErrorCode::InvalidParams as i32, e.to_string()),
            Ok(params) => match handler(self.state, params) {
                Ok(result) => Response::new_ok(id, serde_json::to_value(result).unwrap_or(serde_json::Value::Null)),
                Err(e) => Response::new_err(id, e.code as i32, e.message),
            },
        });
        self
    }

    /// The answer: the handler's, or MethodNotFound when none claimed it.
    pub fn finish(&mut self) -> Response {
        self.response.take().unwrap_or_else(|| {
            Response::new_err(
                self.id.clone(),
                ErrorCode::MethodNotFound as i32,
                format!("flowc lsp does not handle `{}`", self.method),
            )
        })
    }
}

/// One notification on its way to the handler of its method; what handlers
/// return (the notifications to send back) is collected.
pub struct NotificationDispatcher<'a, S> {
    not: Option<Notification>,
    out: Vec<Notification>,
    state: &'a mut S,
}

impl<'a, S> NotificationDispatcher<'a, S> {
    pub fn new(not: Notification, state: &'a mut S) -> Self {
        NotificationDispatcher { not: Some(not), out: Vec::new(), state }
    }

    /// Hands the notification to `handler` when its method is `N`'s; bad
    /// params are dropped, as a notification has no one to answer.
    pub fn on<N>(&mut self, handler: fn(&mut S, N::Params) -> Vec<Notification>) -> &mut Self
    where
        N: lsp_types::notification::Notification,
        N::Params: DeserializeOwned,
    {
        if self.not.as_ref().is_none_or(|n| n.method != N::METHOD) {
            return self;
        }
        let Some(not) = self.not.take() else { return self };
        if let Ok(params) = serde_json::from_value::<N::Params>(not.params) {
            self.out = handler(self.state, params);
        }
        self
    }

    /// What to send back; an unknown notification yields nothing.
    pub fn finish(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lsp_types::request::{HoverRequest, Shutdown};

    fn hover(_: &mut u32, _: lsp_types::HoverParams) -> Result<Option<lsp_types::Hover>, HandlerError> {
        Err(HandlerError::invalid_params("no"))
    }
    fn shutdown(n: &mut u32, _: ()) -> Result<(), HandlerError> {
        *n += 1;
        Ok(())
    }

    fn dispatch(method: &str, params: serde_json::Value, n: &mut u32) -> Response {
        let req = Request { id: RequestId::from(3), method: method.into(), params };
        RequestDispatcher::new(req, n).on::<HoverRequest>(hover).on::<Shutdown>(shutdown).finish()
    }

    #[test]
    fn each_outcome_has_its_error_code() {
        let mut n = 0;
        let ok = dispatch("shutdown", serde_json::Value::Null, &mut n);
        assert!(ok.error.is_none());
        assert_eq!(n, 1, "the handler ran once");
        let bad = dispatch("textDocument/hover", serde_json::json!({"nope": 1}), &mut n);
        assert_eq!(bad.error.map(|e| e.code), Some(ErrorCode::InvalidParams as i32));
        let refused = dispatch(
            "textDocument/hover",
            serde_json::json!({"textDocument": {"uri": "file:///a.flow"}, "position": {"line": 0, "character": 0}}),
            &mut n,
        );
        assert_eq!(
            refused.error.map(|e| (e.code, e.message)),
            Some((ErrorCode::InvalidParams as i32, "no".to_string()))
        );
        let unknown = dispatch("flowc/nothing", serde_json::Value::Null, &mut n);
        assert_eq!(unknown.id, RequestId::from(3));
        assert_eq!(unknown.error.map(|e| e.code), Some(ErrorCode::MethodNotFound as i32));
    }
}
