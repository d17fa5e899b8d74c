//! One handler per LSP method, each taking its typed params; the
//! dispatchers in [`Server::request`] and [`Server::notification`] route
//! messages to them.

use super::dispatch::{HandlerError, NotificationDispatcher, RequestDispatcher};
use super::{path_of, position, publish, query, Server};
use crate::source::FileId;
use lsp_server::{Notification, Request, Response};
use lsp_types::notification::{
    DidChangeTextDocument, DidChangeWatchedFiles, DidCloseTextDocument, DidOpenTextDocument, DidSaveTextDocument,
};
use lsp_types::request::{
    CodeActionRequest, CodeLensRequest, Completion, DocumentSymbolRequest, ExecuteCommand, FoldingRangeRequest,
    Formatting, GotoDefinition, HoverRequest, References, Rename,
};
use lsp_types::*;
use std::collections::HashMap;
use std::path::PathBuf;

type Answer<T> = Result<T, HandlerError>;

impl Server {
    /// Answers one request (all but `initialize` and `shutdown`, which the
    /// session loop owns).
    pub fn request(&mut self, req: Request) -> Response {
        RequestDispatcher::new(req, self)
            .on::<HoverRequest>(hover)
            .on::<GotoDefinition>(definition)
            .on::<Completion>(completion)
            .on::<Formatting>(formatting)
            .on::<DocumentSymbolRequest>(document_symbols)
            .on::<CodeActionRequest>(code_actions)
            .on::<References>(references)
            .on::<Rename>(rename)
            .on::<FoldingRangeRequest>(folding_ranges)
            .on::<CodeLensRequest>(code_lens)
            .on::<ExecuteCommand>(execute_command)
            .finish()
    }

    /// Applies one notification; returns the diagnostics to publish.
    pub fn notification(&mut self, n: Notification) -> Vec<Notification> {
        NotificationDispatcher::new(n, self)
            .on::<DidOpenTextDocument>(did_open)
            .on::<DidChangeTextDocument>(did_change)
            .on::<DidCloseTextDocument>(did_close)
            .on::<DidSaveTextDocument>(did_save)
            .on::<DidChangeWatchedFiles>(did_change_watched_files)
            .finish()
    }
}

fn hover(s: &mut Server, p: HoverParams) -> Answer<Option<Hover>> {
    let at = &p.text_document_position_params;
    let found =
        s.with_doc(at, |_, a, off| query::hover(a, off).map(|(text, span)| (text, span, query::segment_at(a, off))));
    let Some((mut text, span, segment)) = found else { return Ok(None) };
    if let Some(size) = segment.and_then(|name| s.segment_size(&at.text_document.uri, &name)) {
        text.push_str(&size);
    }
    Ok(s.with_doc(at, |s, a, _| Some(s.hover_at(a, text, span))))
}

fn code_lens(s: &mut Server, p: CodeLensParams) -> Answer<Option<Vec<CodeLens>>> {
    Ok(Some(s.code_lenses(&p.text_document.uri)))
}

fn execute_command(s: &mut Server, p: ExecuteCommandParams) -> Answer<Option<serde_json::Value>> {
    if p.command != super::SHOW_ESTIMATE {
        return Err(HandlerError::invalid_params(format!("unknown command `{}`", p.command)));
    }
    let (Some(uri), Some(campaign)) = (
        p.arguments.first().and_then(|u| u.as_str()).and_then(|u| Url::parse(u).ok()),
        p.arguments.get(1).and_then(|c| c.as_str()),
    ) else {
        return Err(HandlerError::invalid_params(format!(
            "{} takes a document URI and a campaign name",
            super::SHOW_ESTIMATE
        )));
    };
    Ok(s.show_estimate(&uri, campaign))
}

fn definition(s: &mut Server, p: GotoDefinitionParams) -> Answer<Option<GotoDefinitionResponse>> {
    Ok(s.with_doc(&p.text_document_position_params, |s, a, off| {
        query::definition(a, off)
            .and_then(|(file, span)| s.locations(a, &[(file, span)]).pop().map(GotoDefinitionResponse::Scalar))
    }))
}

fn completion(s: &mut Server, p: CompletionParams) -> Answer<Option<CompletionResponse>> {
    Ok(s.with_doc(&p.text_document_position, |_, a, off| Some(CompletionResponse::Array(query::complete(a, off)))))
}

fn formatting(s: &mut Server, p: DocumentFormattingParams) -> Answer<Option<Vec<TextEdit>>> {
    let Some((_, text, _)) = path_of(&p.text_document.uri).and_then(|path| s.docs.get(&path)) else { return Ok(None) };
    let (tree, diags) = crate::syntax::parse(text, FileId(0));
    if !diags.is_empty() {
        return Ok(None);
    }
    let formatted = crate::fmt::format(&tree, text);
    let src = crate::source::SourceText::new("doc", text.clone());
    let end = position::to_position(&src, text.len(), s.encoding);
    Ok(Some(vec![TextEdit { range: Range { start: Position::default(), end }, new_text: formatted }]))
}

fn document_symbols(s: &mut Server, p: DocumentSymbolParams) -> Answer<Option<DocumentSymbolResponse>> {
    let Some(path) = path_of(&p.text_document.uri).filter(|p| s.docs.contains_key(p)) else { return Ok(None) };
    let a = s.analyze(&path);
    let src = a.ws.sources.get(a.file);
    let enc = s.encoding;
    let syms = query::symbols(&a, &|span| Range {
        start: position::to_position(src, span.start as usize, enc),
        end: position::to_position(src, span.end as usize, enc),
    });
    Ok(Some(DocumentSymbolResponse::Nested(syms)))
}

/// The fixes the server's own diagnostics carry (never parsed from text).
fn code_actions(s: &mut Server, p: CodeActionParams) -> Answer<Option<CodeActionResponse>> {
    Ok(Some(s.code_actions(&p)))
}

fn references(s: &mut Server, p: ReferenceParams) -> Answer<Option<Vec<Location>>> {
    Ok(s.with_doc(&p.text_document_position, |s, a, off| Some(s.locations(a, &query::references(a, off)))))
}

fn rename(s: &mut Server, p: RenameParams) -> Answer<Option<WorkspaceEdit>> {
    let name = p.new_name;
    let valid = name.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if !valid {
        return Err(HandlerError::invalid_params(format!("`{name}` is not a name ([a-z_][a-z0-9_]*)")));
    }
    let edit = s.with_doc(&p.text_document_position, |s, a, off| {
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
        Some(e) => Ok(Some(e)),
        None => Err(HandlerError::invalid_params("only labels and segments can be renamed")),
    }
}

fn folding_ranges(s: &mut Server, p: FoldingRangeParams) -> Answer<Option<Vec<FoldingRange>>> {
    let Some(path) = path_of(&p.text_document.uri).filter(|p| s.docs.contains_key(p)) else { return Ok(None) };
    let a = s.analyze(&path);
    Ok(Some(
        query::folds(&a)
            .into_iter()
            .map(|(s, e)| FoldingRange { start_line: s as u32, end_line: e as u32, ..Default::default() })
            .collect(),
    ))
}

fn did_open(s: &mut Server, p: DidOpenTextDocumentParams) -> Vec<Notification> {
    if let Some(path) = path_of(&p.text_document.uri) {
        s.cache.invalidate(&path);
        s.docs.insert(path, (p.text_document.uri, p.text_document.text, p.text_document.version));
    }
    s.republish()
}

fn did_change(s: &mut Server, p: DidChangeTextDocumentParams) -> Vec<Notification> {
    let Some(path) = path_of(&p.text_document.uri) else { return vec![] };
    // Full sync: the last change holds the whole text; older versions lose.
    if let (Some(change), Some(doc)) = (p.content_changes.into_iter().last(), s.docs.get_mut(&path)) {
        if p.text_document.version >= doc.2 {
            *doc = (p.text_document.uri, change.text, p.text_document.version);
            s.cache.invalidate(&path);
        }
    }
    s.republish()
}

fn did_close(s: &mut Server, p: DidCloseTextDocumentParams) -> Vec<Notification> {
    let Some(path) = path_of(&p.text_document.uri) else { return vec![] };
    s.docs.remove(&path);
    // Importers now read the file from disk.
    s.cache.invalidate(&path);
    vec![publish(p.text_document.uri, vec![], None)]
}

/// A save changes no open text, but the file on disk now matches it: the
/// analyses that read it from disk are dropped.
fn did_save(s: &mut Server, p: DidSaveTextDocumentParams) -> Vec<Notification> {
    if let Some(path) = path_of(&p.text_document.uri) {
        s.cache.invalidate(&path);
    }
    vec![]
}

/// Files changed on disk (created, deleted, edited elsewhere): a file that
/// did not exist may now satisfy an import, so every analysis goes.
fn did_change_watched_files(s: &mut Server, _: DidChangeWatchedFilesParams) -> Vec<Notification> {
    s.cache.clear();
    s.republish()
}

impl Server {
    /// Any edit can change the diagnostics of files importing it: every
    /// open document's, each from the cache when its inputs are unchanged.
    fn republish(&mut self) -> Vec<Notification> {
        let paths: Vec<PathBuf> = self.docs.keys().cloned().collect();
        paths.iter().map(|p| self.diagnostics_for(p)).collect()
    }
}
