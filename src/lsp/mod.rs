//! `flowc lsp`: the language server over stdio. Only this module knows
//! lsp-types; it calls the same parse, check and fmt as the CLI, so editors
//! show exactly what `flowc check` reports.

mod cache;
mod dispatch;
mod handlers;
mod position;
mod query;
pub mod reach;
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
    /// Reach and cost from the workspace's database, made off this loop.
    reach: reach::Reach,
    client: Client,
}

/// What the client told `initialize` that the server acts on.
#[derive(Default)]
pub struct Client {
    /// The `database` setting (`initializationOptions`), before `flowc.toml`'s.
    pub database: Option<PathBuf>,
    /// Whether it can open a document the server names (`window/showDocument`).
    pub shows_documents: Support,
    /// Whether it takes `workspace/codeLens/refresh` (else it asks for
    /// lenses again on its own, on the next edit).
    pub refreshes_lenses: Support,
    /// Opens the workspace's database for estimates (`None`: no lenses).
    pub open: Option<reach::Opener>,
    /// Sends a request or notification to the client (the session's writer).
    pub send: Option<std::sync::Arc<dyn Fn(Message) + Send + Sync>>,
}

/// Whether the client supports a request of the server's.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Support {
    Yes,
    #[default]
    No,
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

/// Runs a session over stdio. `open` opens a database read-only for the
/// reach lenses (the command chooses the store).
pub fn run(open: reach::Opener) -> Result<Exit, String> {
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
        code_lens_provider: Some(CodeLensOptions { resolve_provider: Some(false) }),
        execute_command_provider: Some(ExecuteCommandOptions {
            commands: vec![SHOW_ESTIMATE.to_string()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let result = serde_json::json!({"capabilities": caps, "serverInfo": {"name": "flowc", "version": env!("CARGO_PKG_VERSION")}});
    sent(Message::Response(Response::new_ok(id, result)))?;
    let outgoing = io.outgoing.clone();
    let send: std::sync::Arc<dyn Fn(Message) + Send + Sync> = std::sync::Arc::new(move |m: Message| {
        // A closed writer means the session is ending.
        let _ = outgoing.send(transport::Outgoing::Message(m));
    });
    let client = Client { open: Some(open), ..client_of(&init, send) };
    let mut server = Server::with_client(encoding, client);
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

/// The command a reach lens runs: opens the campaign's per-step estimate.
pub const SHOW_ESTIMATE: &str = "flowc.showEstimate";

/// What the server keeps of the client's `initialize`.
fn client_of(init: &InitializeParams, send: std::sync::Arc<dyn Fn(Message) + Send + Sync>) -> Client {
    let database = init
        .initialization_options
        .as_ref()
        .and_then(|o| o.get("database"))
        .and_then(|d| d.as_str())
        .filter(|d| !d.trim().is_empty())
        .map(PathBuf::from);
    let shows = init.capabilities.window.as_ref().and_then(|w| w.show_document.as_ref()).is_some_and(|s| s.support);
    let refreshes = init
        .capabilities
        .workspace
        .as_ref()
        .and_then(|w| w.code_lens.as_ref())
        .and_then(|c| c.refresh_support)
        .unwrap_or(false);
    Client {
        database,
        shows_documents: if shows { Support::Yes } else { Support::No },
        refreshes_lenses: if refreshes { Support::Yes } else { Support::No },
        open: None,
        send: Some(send),
    }
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
    pub(crate) fn with_client(encoding: Encoding, client: Client) -> Server {
        let notify = client.send.clone().filter(|_| client.refreshes_lenses == Support::Yes);
        let refresh_ids = std::sync::atomic::AtomicI32::new(0);
        // Without an opener nothing is ever estimated: no lens, no size.
        let open = client.open.clone().unwrap_or_else(|| std::sync::Arc::new(|_: &Path| None));
        let reach = reach::Reach::new(open, move || {
            if let Some(send) = &notify {
                let n = refresh_ids.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                send(Message::Request(lsp_server::Request::new(
                    RequestId::from(format!("flowc-refresh-{n}")),
                    "workspace/codeLens/refresh".into(),
                    serde_json::Value::Null,
                )));
            }
        });
        Server { docs: HashMap::new(), encoding, cache: Cache::default(), reach, client }
    }

    /// The database a document's reach is estimated over: the client's
    /// setting, else `database` in the workspace's `flowc.toml`; only an
    /// SQLite file that exists (the editor never creates one).
    fn database_for(&self, path: &Path) -> Option<PathBuf> {
        let configured = match &self.client.database {
            Some(db) if db.is_absolute() => Some(db.clone()),
            // Relative to the workspace (the folder of its flowc.toml), else to the document's folder.
            Some(db) => workspace::find_workspace_file(path)
                .as_deref()
                .and_then(Path::parent)
                .or_else(|| path.parent())
                .map(|dir| dir.join(db)),
            None => crate::config::load(path).ok().and_then(|c| c.database),
        }?;
        configured.is_file().then_some(configured)
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

    /// A lens above each campaign of the document: its audience and
    /// expected cost over the workspace's database, once estimated.
    pub(crate) fn code_lenses(&mut self, uri: &Url) -> Vec<CodeLens> {
        let Some(path) = path_of(uri).filter(|p| self.docs.contains_key(p)) else { return vec![] };
        let Some(db) = self.database_for(&path) else { return vec![] };
        let a = self.analyze(&path);
        if a.result.has_errors() {
            return vec![];
        }
        let Some((_, model)) = a.result.models.first() else { return vec![] };
        let src = a.ws.sources.get(a.file);
        let mut lenses = Vec::new();
        for c in model.campaigns.iter().filter(|c| c.file == a.file) {
            let program = crate::compile::compile(model, c, src);
            let Some(e) = self.reach.ask(&db, &program, model) else { continue };
            lenses.push(CodeLens {
                range: Range {
                    start: position::to_position(src, c.name_span.start as usize, self.encoding),
                    end: position::to_position(src, c.name_span.end as usize, self.encoding),
                },
                command: Some(Command {
                    title: reach::lens_title(&e),
                    command: SHOW_ESTIMATE.into(),
                    arguments: Some(vec![serde_json::json!(uri.as_str()), serde_json::json!(c.name)]),
                }),
                data: None,
            });
        }
        lenses
    }

    /// The campaign's per-step estimate, written to a file the client is
    /// asked to open; the text itself is the command's result.
    pub(crate) fn show_estimate(&mut self, uri: &Url, campaign: &str) -> Option<serde_json::Value> {
        let path = path_of(uri).filter(|p| self.docs.contains_key(p))?;
        let db = self.database_for(&path)?;
        let a = self.analyze(&path);
        let (_, model) = a.result.models.first()?;
        let c = model.campaigns.iter().find(|c| c.file == a.file && c.name == campaign)?;
        let program = crate::compile::compile(model, c, a.ws.sources.get(a.file));
        let Some(e) = self.reach.ask(&db, &program, model) else {
            self.tell(format!("flowc: the estimate of `{campaign}` is still being made; try again in a moment"));
            return None;
        };
        let text = reach::document(&e, &db);
        // A name of letters, digits, `_` and `-` only: a campaign name never
        // leaves the folder (the language allows no other characters, but
        // the file name does not rely on it).
        let safe: String =
            campaign.chars().map(|ch| if ch.is_ascii_alphanumeric() || ch == '-' { ch } else { '_' }).collect();
        let dir = std::env::temp_dir().join(format!("flowc-lsp-{}", std::process::id()));
        let file = dir.join(format!("{safe}.estimate.txt"));
        let written = std::fs::create_dir_all(&dir).and_then(|_| std::fs::write(&file, &text));
        if let (Ok(()), Support::Yes, Some(send), Ok(doc)) =
            (written, self.client.shows_documents, &self.client.send, Url::from_file_path(&file))
        {
            let params =
                ShowDocumentParams { uri: doc, external: Some(false), take_focus: Some(true), selection: None };
            send(Message::Request(lsp_server::Request::new(
                RequestId::from(format!("flowc-show-{safe}")),
                "window/showDocument".into(),
                params,
            )));
        }
        Some(serde_json::json!({ "campaign": campaign, "text": text }))
    }

    /// The current size of segment `name` as a hover line, once estimated.
    pub(crate) fn segment_size(&mut self, uri: &Url, name: &str) -> Option<String> {
        let path = path_of(uri).filter(|p| self.docs.contains_key(p))?;
        let db = self.database_for(&path)?;
        let a = self.analyze(&path);
        if a.result.has_errors() {
            return None;
        }
        let (_, model) = a.result.models.first()?;
        let segment = model.segments.get(name)?;
        let (file, span) = match segment.origin {
            crate::check::model::Origin::Source(f, s) => (f, s),
            crate::check::model::Origin::Registry => (a.file, crate::source::Span::default()),
        };
        let campaign = reach::segment_campaign(segment, file, span);
        let program = crate::compile::compile(model, &campaign, a.ws.sources.get(file));
        let e = self.reach.ask(&db, &program, model)?;
        Some(format!("\n\n**now**: {} in `{}`", reach::members(e.audience), db.display()))
    }

    /// A message for the person at the editor.
    fn tell(&self, message: String) {
        if let Some(send) = &self.client.send {
            send(Message::Notification(Notification::new(
                "window/showMessage".into(),
                ShowMessageParams { typ: MessageType::INFO, message },
            )));
        }
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
