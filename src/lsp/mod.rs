//! `flowc lsp`: the language server over stdio. Only this module knows
//! lsp-types; it calls the same parse, check and fmt as the CLI, so editors
//! show exactly what `flowc check` reports.

mod position;
mod query;
pub mod transport;

use crate::check::{self, CheckOptions};
use crate::diag::{Diagnostic as Diag, Severity};
use crate::source::FileId;
use crate::workspace::{self, Root, Workspace};
use lsp_server::{ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types::notification::{DidChangeTextDocument, DidCloseTextDocument, DidOpenTextDocument, Exit as ExitNotification, Notification as _, PublishDiagnostics};
use lsp_types::request::{CodeActionRequest, Completion, DocumentSymbolRequest, FoldingRangeRequest, Formatting, GotoDefinition, HoverRequest, Initialize, References, Rename, Request as _, Shutdown};
use lsp_types::*;
use position::Encoding;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Open documents and how positions are counted.
pub struct Server {
    docs: HashMap<PathBuf, (Url, String, i32)>,
    encoding: Encoding,
}

/// One checked view of a document and what it imports.
pub struct Analysis {
    pub ws: Workspace,
    pub result: check::Analysis,
    pub file: FileId,
}

/// How a session ended: the protocol asks for exit code 0 after a
/// `shutdown` request, 1 when `exit` (or the end of input) comes without one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    AfterShutdown,
    WithoutShutdown,
}

pub fn run() -> Result<Exit, String> {
    let io = transport::stdio();
    let sent = |m: Message| io.outgoing.send(transport::Outgoing::Message(m)).map_err(|e| e.to_string());
    let Some((id, params)) = initialize_request(&io)? else {
        io.finish();
        return Ok(Exit::WithoutShutdown);
    };
    let init: InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let offered = init.capabilities.general.as_ref().and_then(|g| g.position_encodings.clone()).unwrap_or_default();
    // UTF-16 unless the client offers another encoding (LSP 3.17).
    let (encoding, kind) = if offered.contains(&PositionEncodingKind::UTF8) {
        (Encoding::Utf8, PositionEncodingKind::UTF8)
    } else if offered.contains(&PositionEncodingKind::UTF32) && !offered.contains(&PositionEncodingKind::UTF16) {
        (Encoding::Utf32, PositionEncodingKind::UTF32)
    } else {
        (Encoding::Utf16, PositionEncodingKind::UTF16)
    };
    let caps = ServerCapabilities {
        position_encoding: Some(kind),
        text_document_sync: Some(TextDocumentSyncCapability::Kind(TextDocumentSyncKind::FULL)),
        hover_provider: Some(HoverProviderCapability::Simple(true)),
        completion_provider: Some(CompletionOptions { trigger_characters: Some(vec![".".into(), " ".into(), "\"".into()]), ..Default::default() }),
        definition_provider: Some(OneOf::Left(true)),
        document_formatting_provider: Some(OneOf::Left(true)),
        document_symbol_provider: Some(OneOf::Left(true)),
        code_action_provider: Some(CodeActionProviderCapability::Simple(true)),
        references_provider: Some(OneOf::Left(true)),
        rename_provider: Some(OneOf::Left(true)),
        folding_range_provider: Some(FoldingRangeProviderCapability::Simple(true)),
        ..Default::default()
    };
    let result = serde_json::json!({"capabilities": caps, "serverInfo": {"name": "flowc", "version": env!("CARGO_PKG_VERSION")}});
    sent(Message::Response(Response::new_ok(id, result)))?;
    let mut server = Server { docs: HashMap::new(), encoding };
    let mut shut_down = false;
    // Messages already received but not handled: lets a request see that an
    // edit of its document is waiting (ContentModified), and lets a burst of
    // edits publish diagnostics once, for the latest text.
    let mut queue: std::collections::VecDeque<Message> = std::collections::VecDeque::new();
    loop {
        while let Ok(m) = io.incoming.try_recv() {
            queue.push_back(m);
        }
        let msg = match queue.pop_front() {
            Some(m) => m,
            None => match io.incoming.recv() {
                Ok(m) => m,
                Err(_) => break,
            },
        };
        while let Ok(m) = io.incoming.try_recv() {
            queue.push_back(m);
        }
        match msg {
            Message::Request(req) => {
                let id = req.id.clone();
                let resp = if shut_down {
                    Response::new_err(id, ErrorCode::InvalidRequest as i32, "the server is shut down; only `exit` is expected".into())
                } else if req.method == Shutdown::METHOD {
                    shut_down = true;
                    Response::new_ok(id, ())
                } else if edit_pending(&queue, document_of(&req.params).as_deref()) {
                    Response::new_err(id, -32801, "the document changed; ask again".into())
                } else {
                    guarded(id, || server.request(req))
                };
                sent(Message::Response(resp))?;
            }
            Message::Notification(n) if n.method == ExitNotification::METHOD => break,
            Message::Notification(n) => {
                let later_edit = n.method == DidChangeTextDocument::METHOD && edit_pending(&queue, document_of(&n.params).as_deref());
                let published = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.notification(n))).unwrap_or_default();
                // Debounce: a newer edit is already here, its diagnostics will follow.
                if !later_edit {
                    for p in published {
                        sent(Message::Notification(p))?;
                    }
                }
            }
            Message::Response(_) => {}
        }
    }
    io.finish();
    Ok(if shut_down { Exit::AfterShutdown } else { Exit::WithoutShutdown })
}

/// Waits for `initialize`: other requests are answered "not initialized",
/// notifications are dropped. `None` when `exit` or the end of input comes
/// first.
fn initialize_request(io: &transport::Stdio) -> Result<Option<(RequestId, serde_json::Value)>, String> {
    while let Ok(msg) = io.incoming.recv() {
        match msg {
            Message::Request(req) if req.method == Initialize::METHOD => return Ok(Some((req.id, req.params))),
            Message::Request(req) => {
                let resp = Response::new_err(req.id, ErrorCode::ServerNotInitialized as i32, "the server is not initialized yet".into());
                io.outgoing.send(transport::Outgoing::Message(Message::Response(resp))).map_err(|e| e.to_string())?;
            }
            Message::Notification(n) if n.method == ExitNotification::METHOD => return Ok(None),
            Message::Notification(_) | Message::Response(_) => {}
        }
    }
    Ok(None)
}

/// Runs one request handler; a bug in it (a panic) answers that request
/// with an internal error and the server lives on.
fn guarded(id: RequestId, handler: impl FnOnce() -> Response) -> Response {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler))
        .unwrap_or_else(|_| Response::new_err(id, ErrorCode::InternalError as i32, "flowc lsp: internal error in this request".into()))
}

/// The `textDocument.uri` a message is about, if any.
fn document_of(params: &serde_json::Value) -> Option<String> {
    params.get("textDocument")?.get("uri")?.as_str().map(str::to_string)
}

/// Is an edit of `uri` waiting in the queue?
fn edit_pending(queue: &std::collections::VecDeque<Message>, uri: Option<&str>) -> bool {
    let Some(uri) = uri else { return false };
    queue.iter().any(|m| matches!(m, Message::Notification(n) if n.method == DidChangeTextDocument::METHOD && document_of(&n.params).as_deref() == Some(uri)))
}

/// The real path of a document: the key of the open buffers, the same path
/// the loader asks the reader for, however the client spells the URI.
fn path_of(uri: &Url) -> Option<PathBuf> {
    let p = uri.to_file_path().ok()?;
    Some(workspace::real_path(&p).unwrap_or_else(|_| workspace::normalize(&p)))
}

fn params<P: serde::de::DeserializeOwned>(req: &Request) -> Result<P, Response> {
    serde_json::from_value(req.params.clone()).map_err(|e| Response::new_err(req.id.clone(), ErrorCode::InvalidParams as i32, e.to_string()))
}

fn ok<T: serde::Serialize>(id: RequestId, v: T) -> Response {
    Response::new_ok(id, serde_json::to_value(v).unwrap_or(serde_json::Value::Null))
}

impl Server {
    /// Checks `path` with the open buffers standing in for files on disk.
    pub fn analyze(&self, path: &Path) -> Analysis {
        let docs = &self.docs;
        let read = |p: &Path| match docs.get(p) {
            Some((_, text, _)) => Ok(text.clone().into_bytes()),
            None => workspace::read_from_disk(p),
        };
        // The same root as `flowc check` finds for this file.
        // A path that cannot be resolved at all has nothing to check.
        let roots: Vec<Root> = Root::discover(path).into_iter().collect();
        let ws = workspace::load(&roots, &read);
        // The workspace's flowc.toml sets lint levels here as for `flowc
        // check`; a broken one is reported by the commands, not in every hover.
        let config = crate::config::load(path).unwrap_or_default();
        let opts = CheckOptions { allow_draft: config.allow_draft == Some(true), now: Some(chrono::Utc::now()), lints: config.lints };
        let result = check::check_all(&ws, &[], &opts);
        let file = ws.sources.find(path).unwrap_or_default();
        Analysis { ws, result, file }
    }

    fn notification(&mut self, n: Notification) -> Vec<Notification> {
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidOpenTextDocumentParams>(n.params) else { return vec![] };
                if let Some(path) = path_of(&p.text_document.uri) {
                    self.docs.insert(path, (p.text_document.uri, p.text_document.text, p.text_document.version));
                }
            }
            DidChangeTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidChangeTextDocumentParams>(n.params) else { return vec![] };
                let Some(path) = path_of(&p.text_document.uri) else { return vec![] };
                // Full sync: the last change holds the whole text; older versions lose.
                if let (Some(change), Some(doc)) = (p.content_changes.into_iter().last(), self.docs.get_mut(&path)) {
                    if p.text_document.version >= doc.2 {
                        *doc = (p.text_document.uri, change.text, p.text_document.version);
                    }
                }
            }
            DidCloseTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<DidCloseTextDocumentParams>(n.params) else { return vec![] };
                if let Some(path) = path_of(&p.text_document.uri) {
                    self.docs.remove(&path);
                    return vec![publish(p.text_document.uri, vec![], None)];
                }
                return vec![];
            }
            _ => return vec![],
        }
        // Any edit can change the diagnostics of files importing it: recheck every open one.
        let paths: Vec<PathBuf> = self.docs.keys().cloned().collect();
        paths.iter().map(|p| self.diagnostics_for(p)).collect()
    }

    fn diagnostics_for(&self, path: &Path) -> Notification {
        let (uri, _, version) = self.docs[path].clone();
        let a = self.analyze(path);
        let src = a.ws.sources.get(a.file);
        let diags = a.result.diags.iter().filter(|d| d.file == a.file).map(|d| self.to_lsp(src, d)).collect();
        publish(uri, diags, Some(version))
    }

    fn to_lsp(&self, src: &crate::source::SourceText, d: &Diag) -> Diagnostic {
        let range = Range { start: position::to_position(src, d.span.start as usize, self.encoding), end: position::to_position(src, d.span.end as usize, self.encoding) };
        let message = crate::diag::render::plain(d);
        Diagnostic {
            range,
            severity: Some(if d.severity == Severity::Error { DiagnosticSeverity::ERROR } else { DiagnosticSeverity::WARNING }),
            code: Some(NumberOrString::String(d.code.as_str().into())),
            source: Some("flowc".into()),
            message,
            ..Default::default()
        }
    }

    /// The fixes of the client's diagnostics, taken from this server's own
    /// diagnostics at the same range and code (never parsed from the text).
    fn code_actions(&self, p: &CodeActionParams) -> Vec<CodeActionOrCommand> {
        let Some(path) = path_of(&p.text_document.uri).filter(|path| self.docs.contains_key(path)) else { return vec![] };
        let a = self.analyze(&path);
        let src = a.ws.sources.get(a.file);
        let range = |span: crate::source::Span| Range { start: position::to_position(src, span.start as usize, self.encoding), end: position::to_position(src, span.end as usize, self.encoding) };
        let mut actions = Vec::new();
        for d in &p.context.diagnostics {
            let code = match &d.code {
                Some(NumberOrString::String(c)) => c.as_str(),
                _ => continue,
            };
            let ours = a.result.diags.iter().filter(|o| o.file == a.file && o.code.as_str() == code && range(o.span) == d.range);
            for fix in ours.filter_map(|o| o.fix.as_ref()) {
                let edit = TextEdit { range: range(fix.span), new_text: fix.replacement.clone() };
                let mut changes = HashMap::new();
                changes.insert(p.text_document.uri.clone(), vec![edit]);
                actions.push(CodeActionOrCommand::CodeAction(CodeAction {
                    title: format!("Replace with `{}`", fix.replacement),
                    kind: Some(CodeActionKind::QUICKFIX),
                    diagnostics: Some(vec![d.clone()]),
                    edit: Some(WorkspaceEdit { changes: Some(changes), ..Default::default() }),
                    is_preferred: Some(true),
                    ..Default::default()
                }));
            }
        }
        actions
    }

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        match req.method.as_str() {
            HoverRequest::METHOD => match params::<HoverParams>(&req) {
                Ok(p) => ok(id, self.with_doc(&p.text_document_position_params, |s, a, off| query::hover(a, off).map(|(text, span)| s.hover(a, text, span)))),
                Err(e) => e,
            },
            GotoDefinition::METHOD => match params::<GotoDefinitionParams>(&req) {
                Ok(p) => ok(
                    id,
                    self.with_doc(&p.text_document_position_params, |s, a, off| {
                        query::definition(a, off).and_then(|(file, span)| {
                            let src = a.ws.sources.get(file);
                            let uri = Url::from_file_path(std::fs::canonicalize(&src.path).unwrap_or_else(|_| src.path.clone())).ok()?;
                            let range = Range { start: position::to_position(src, span.start as usize, s.encoding), end: position::to_position(src, span.end as usize, s.encoding) };
                            Some(GotoDefinitionResponse::Scalar(Location { uri, range }))
                        })
                    }),
                ),
                Err(e) => e,
            },
            Completion::METHOD => match params::<CompletionParams>(&req) {
                Ok(p) => ok(id, self.with_doc(&p.text_document_position, |_, a, off| Some(CompletionResponse::Array(query::complete(a, off))))),
                Err(e) => e,
            },
            Formatting::METHOD => match params::<DocumentFormattingParams>(&req) {
                Ok(p) => {
                    let Some((_, text, _)) = path_of(&p.text_document.uri).and_then(|path| self.docs.get(&path)) else { return ok(id, None::<Vec<TextEdit>>) };
                    let (tree, diags) = crate::syntax::parse(text, FileId(0));
                    if !diags.is_empty() {
                        return ok(id, None::<Vec<TextEdit>>);
                    }
                    let formatted = crate::fmt::format(&tree, text);
                    let src = crate::source::SourceText::new("doc", text.clone());
                    let end = position::to_position(&src, text.len(), self.encoding);
                    ok(id, Some(vec![TextEdit { range: Range { start: Position::default(), end }, new_text: formatted }]))
                }
                Err(e) => e,
            },
            DocumentSymbolRequest::METHOD => match params::<DocumentSymbolParams>(&req) {
                Ok(p) => {
                    let Some(path) = path_of(&p.text_document.uri) else { return ok(id, None::<DocumentSymbolResponse>) };
                    if !self.docs.contains_key(&path) {
                        return ok(id, None::<DocumentSymbolResponse>);
                    }
                    let a = self.analyze(&path);
                    let src = a.ws.sources.get(a.file);
                    let enc = self.encoding;
                    let syms = query::symbols(&a, &|span| Range { start: position::to_position(src, span.start as usize, enc), end: position::to_position(src, span.end as usize, enc) });
                    ok(id, Some(DocumentSymbolResponse::Nested(syms)))
                }
                Err(e) => e,
            },
            CodeActionRequest::METHOD => match params::<CodeActionParams>(&req) {
                Ok(p) => ok(id, self.code_actions(&p)),
                Err(e) => e,
            },
            References::METHOD => match params::<ReferenceParams>(&req) {
                Ok(p) => ok(id, self.with_doc(&p.text_document_position, |s, a, off| Some(s.locations(a, &query::references(a, off))))),
                Err(e) => e,
            },
            Rename::METHOD => match params::<RenameParams>(&req) {
                Ok(p) => {
                    let name = p.new_name.clone();
                    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_') && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
                    if !valid {
                        return Response::new_err(id, ErrorCode::InvalidParams as i32, format!("`{name}` is not a name ([a-z_][a-z0-9_]*)"));
                    }
                    let edit = self.with_doc(&p.text_document_position, |s, a, off| {
                        if !query::renamable(a, off) {
                            return None;
                        }
                        let mut changes: HashMap<Url, Vec<TextEdit>> = HashMap::new();
                        for loc in s.locations(a, &query::references(a, off)) {
                            changes.entry(loc.uri).or_default().push(TextEdit { range: loc.range, new_text: name.clone() });
                        }
                        Some(WorkspaceEdit { changes: Some(changes), ..Default::default() })
                    });
                    match edit {
                        Some(e) => ok(id, e),
                        None => Response::new_err(id, ErrorCode::InvalidParams as i32, "only labels and segments can be renamed".into()),
                    }
                }
                Err(e) => e,
            },
            FoldingRangeRequest::METHOD => match params::<FoldingRangeParams>(&req) {
                Ok(p) => {
                    let Some(path) = path_of(&p.text_document.uri).filter(|p| self.docs.contains_key(p)) else { return ok(id, None::<Vec<FoldingRange>>) };
                    let a = self.analyze(&path);
                    let ranges: Vec<FoldingRange> = query::folds(&a).into_iter().map(|(s, e)| FoldingRange { start_line: s as u32, end_line: e as u32, ..Default::default() }).collect();
                    ok(id, Some(ranges))
                }
                Err(e) => e,
            },
            _ => Response::new_err(id, ErrorCode::MethodNotFound as i32, format!("flowc lsp does not handle `{}`", req.method)),
        }
    }

    fn locations(&self, a: &Analysis, spans: &[(FileId, crate::source::Span)]) -> Vec<Location> {
        spans
            .iter()
            .filter_map(|(f, span)| {
                let src = a.ws.sources.get(*f);
                let uri = Url::from_file_path(std::fs::canonicalize(&src.path).unwrap_or_else(|_| src.path.clone())).ok()?;
                Some(Location { uri, range: Range { start: position::to_position(src, span.start as usize, self.encoding), end: position::to_position(src, span.end as usize, self.encoding) } })
            })
            .collect()
    }

    fn hover(&self, a: &Analysis, text: String, span: crate::source::Span) -> Hover {
        let src = a.ws.sources.get(a.file);
        let range = Range { start: position::to_position(src, span.start as usize, self.encoding), end: position::to_position(src, span.end as usize, self.encoding) };
        Hover { contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: text }), range: Some(range) }
    }

    fn with_doc<T>(&self, at: &TextDocumentPositionParams, f: impl FnOnce(&Server, &Analysis, usize) -> Option<T>) -> Option<T> {
        let path = path_of(&at.text_document.uri)?;
        self.docs.get(&path)?;
        let a = self.analyze(&path);
        let off = position::to_offset(a.ws.sources.get(a.file), at.position, self.encoding);
        f(self, &a, off)
    }
}

fn publish(uri: Url, diagnostics: Vec<Diagnostic>, version: Option<i32>) -> Notification {
    Notification::new(PublishDiagnostics::METHOD.to_string(), PublishDiagnosticsParams { uri, diagnostics, version })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_handler_is_answered_with_an_internal_error() {
        let r = guarded(RequestId::from(7), || panic!("a bug"));
        assert_eq!(r.id, RequestId::from(7));
        let e = r.error.expect("an error response");
        assert_eq!(e.code, ErrorCode::InternalError as i32);
        assert!(r.result.is_none());
        let ok = guarded(RequestId::from(8), || Response::new_ok(RequestId::from(8), 1));
        assert!(ok.error.is_none());
    }
}
