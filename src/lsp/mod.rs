//! `flowc lsp`: the language server over stdio. Only this module knows
//! lsp-types; it calls the same parse, check and fmt as the CLI, so editors
//! show exactly what `flowc check` reports.

mod cache;
mod dispatch;
mod handlers;
mod position;
mod query;
pub mod transport;

use crate::check::{self, CheckOptions};
use crate::diag::{Diagnostic as Diag, Severity};
use crate::source::FileId;
use crate::workspace::{self, Root, Workspace};
use cache::{Cache, Stamp};
use lsp_server::{ErrorCode, Message, Notification, RequestId, Response};
use lsp_types::notification::{DidChangeTextDocument, Exit as ExitNotification, Notification as _, PublishDiagnostics};
use lsp_types::request::{Initialize, Request as _, Shutdown};
use lsp_types::*;
use position::Encoding;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Open documents, how positions are counted, and the analyses of the
/// documents as they are now.
pub struct Server {
    docs: HashMap<PathBuf, (Url, String, i32)>,
    encoding: Encoding,
    cache: Cache,
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
        completion_provider: Some(CompletionOptions {
            trigger_characters: Some(vec![".".into(), " ".into(), "\"".into()]),
            ..Default::default()
        }),
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
    let mut server = Server::new(encoding);
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
                    Response::new_err(
                        id,
                        ErrorCode::InvalidRequest as i32,
                        "the server is shut down; only `exit` is expected".into(),
                    )
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
                let later_edit = n.method == DidChangeTextDocument::METHOD
                    && edit_pending(&queue, document_of(&n.params).as_deref());
                let published = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| server.notification(n)))
                    .unwrap_or_default();
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
                let resp = Response::new_err(
                    req.id,
                    ErrorCode::ServerNotInitialized as i32,
                    "the server is not initialized yet".into(),
                );
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
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(handler)).unwrap_or_else(|_| {
        Response::new_err(id, ErrorCode::InternalError as i32, "flowc lsp: internal error in this request".into())
    })
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

impl Server {
    fn new(encoding: Encoding) -> Server {
        Server { docs: HashMap::new(), encoding, cache: Cache::default() }
    }

    /// The analysis of `path` with the open buffers standing in for files
    /// on disk: the cached one while nothing it read has changed, else a
    /// fresh check.
    pub fn analyze(&mut self, path: &Path) -> Rc<Analysis> {
        let docs = &self.docs;
        let stamp_now = |p: &Path| match docs.get(p) {
            Some((_, _, version)) => Stamp::Open(*version),
            None => Stamp::of_disk(p),
        };
        if let Some(a) = self.cache.get(path, &stamp_now) {
            return a;
        }
        let a = Rc::new(self.check(path));
        // What it read: every file of its units but the embedded stdlib,
        // and the flowc.toml that set its lint levels.
        let mut inputs: Vec<PathBuf> =
            a.ws.units
                .iter()
                .flat_map(|u| u.files.iter())
                .filter(|f| !a.ws.is_stdlib(**f))
                .map(|f| {
                    let shown = &a.ws.sources.get(*f).path;
                    workspace::real_path(shown).unwrap_or_else(|_| workspace::normalize(shown))
                })
                .collect();
        inputs.push(path.to_path_buf());
        inputs.extend(workspace::find_workspace_file(path));
        inputs.sort();
        inputs.dedup();
        let stamped = inputs.into_iter().map(|p| {
            let s = stamp_now(&p);
            (p, s)
        });
        self.cache.insert(path.to_path_buf(), stamped.collect(), a.clone());
        a
    }

    /// Checks `path` with the open buffers standing in for files on disk.
    fn check(&self, path: &Path) -> Analysis {
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
        let opts = CheckOptions {
            allow_draft: config.allow_draft == Some(true),
            now: Some(chrono::Utc::now()),
            lints: config.lints,
        };
        let result = check::check_all(&ws, &[], &opts);
        let file = ws.sources.find(path).unwrap_or_default();
        Analysis { ws, result, file }
    }

    fn diagnostics_for(&mut self, path: &Path) -> Notification {
        let (uri, _, version) = self.docs[path].clone();
        let a = self.analyze(path);
        let src = a.ws.sources.get(a.file);
        let diags = a.result.diags.iter().filter(|d| d.file == a.file).map(|d| self.to_lsp(src, d)).collect();
        publish(uri, diags, Some(version))
    }

    fn to_lsp(&self, src: &crate::source::SourceText, d: &Diag) -> Diagnostic {
        let range = Range {
            start: position::to_position(src, d.span.start as usize, self.encoding),
            end: position::to_position(src, d.span.end as usize, self.encoding),
        };
        let message = crate::diag::render::plain(d);
        Diagnostic {
            range,
            severity: Some(if d.severity == Severity::Error {
                DiagnosticSeverity::ERROR
            } else {
                DiagnosticSeverity::WARNING
            }),
            code: Some(NumberOrString::String(d.code.as_str().into())),
            source: Some("flowc".into()),
            message,
            ..Default::default()
        }
    }

    /// The fixes of the client's diagnostics, taken from this server's own
    /// diagnostics at the same range and code (never parsed from the text).
    pub(crate) fn code_actions(&mut self, p: &CodeActionParams) -> Vec<CodeActionOrCommand> {
        let Some(path) = path_of(&p.text_document.uri).filter(|path| self.docs.contains_key(path)) else {
            return vec![];
        };
        let a = self.analyze(&path);
        let src = a.ws.sources.get(a.file);
        let range = |span: crate::source::Span| Range {
            start: position::to_position(src, span.start as usize, self.encoding),
            end: position::to_position(src, span.end as usize, self.encoding),
        };
        let mut actions = Vec::new();
        for d in &p.context.diagnostics {
            let code = match &d.code {
                Some(NumberOrString::String(c)) => c.as_str(),
                _ => continue,
            };
            let ours = a
                .result
                .diags
                .iter()
                .filter(|o| o.file == a.file && o.code.as_str() == code && range(o.span) == d.range);
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

    fn locations(&self, a: &Analysis, spans: &[(FileId, crate::source::Span)]) -> Vec<Location> {
        spans
            .iter()
            .filter_map(|(f, span)| {
                let src = a.ws.sources.get(*f);
                let uri =
                    Url::from_file_path(std::fs::canonicalize(&src.path).unwrap_or_else(|_| src.path.clone())).ok()?;
                Some(Location {
                    uri,
                    range: Range {
                        start: position::to_position(src, span.start as usize, self.encoding),
                        end: position::to_position(src, span.end as usize, self.encoding),
                    },
                })
            })
            .collect()
    }

    fn hover_at(&self, a: &Analysis, text: String, span: crate::source::Span) -> Hover {
        let src = a.ws.sources.get(a.file);
        let range = Range {
            start: position::to_position(src, span.start as usize, self.encoding),
            end: position::to_position(src, span.end as usize, self.encoding),
        };
        Hover {
            contents: HoverContents::Markup(MarkupContent { kind: MarkupKind::Markdown, value: text }),
            range: Some(range),
        }
    }

    fn with_doc<T>(
        &mut self,
        at: &TextDocumentPositionParams,
        f: impl FnOnce(&Server, &Analysis, usize) -> Option<T>,
    ) -> Option<T> {
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
mod tests;
