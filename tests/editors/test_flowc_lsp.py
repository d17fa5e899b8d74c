"""End-to-end tests of `flowc lsp` through pytest-lsp, a third-party LSP client.

The client announces the recorded capabilities of real editors (VS Code and
Neovim), and pytest-lsp checks every server answer against them. Each test
opens an example campaign the way an editor does, with an unsaved typo in the
buffer, and expects what `flowc check` says about the same text, plus hover,
completion, go to definition and formatting.

Run by `cargo test` (tests/editors.rs) with FLOWC_BIN pointing at the built
binary; `.ci/run` installs the client (tests/editors/requirements.txt).
"""

import asyncio
import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import pytest_lsp
from lsprotocol import types
from pytest_lsp import ClientServerConfig, LanguageClient, client_capabilities

ROOT = pathlib.Path(__file__).resolve().parents[2]
FLOWC = os.environ.get("FLOWC_BIN") or str(ROOT / "target" / "debug" / "flowc")
TYPO = ("hello: send email.marketing welcome_email", "hello: send email.marketing welcome_emial")
CLIENTS = ["visual-studio-code", "neovim"]


@pytest.fixture()
def workspace(tmp_path):
    """A copy of the examples with the welcome campaign's template misspelt on disk."""
    for f in (ROOT / "examples").glob("*.flow"):
        shutil.copy(f, tmp_path / f.name)
    welcome = tmp_path / "welcome.flow"
    text = welcome.read_text(encoding="utf-8")
    assert TYPO[0] in text, "the example changed: update TYPO"
    welcome.write_text(text.replace(TYPO[0], TYPO[1]), encoding="utf-8")
    return tmp_path


@pytest_lsp.fixture(
    params=CLIENTS,
    config=ClientServerConfig(server_command=[FLOWC, "lsp"]),
)
async def client(request, lsp_client: LanguageClient):
    params = types.InitializeParams(capabilities=client_capabilities(request.param))
    result = await lsp_client.initialize_session(params)
    assert result.server_info is not None and result.server_info.name == "flowc"
    yield
    await lsp_client.shutdown_session()


def uri_of(path: pathlib.Path) -> str:
    return path.as_uri()


async def open_document(client: LanguageClient, path: pathlib.Path) -> str:
    text = path.read_text(encoding="utf-8")
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(
            text_document=types.TextDocumentItem(uri=uri_of(path), language_id="flow", version=1, text=text)
        )
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    return text


def position_of(text: str, needle: str, offset: int = 0) -> types.Position:
    """The position of `needle` (+ offset characters) in ASCII text."""
    i = text.index(needle) + offset
    line = text.count("\n", 0, i)
    return types.Position(line=line, character=i - (text.rfind("\n", 0, i) + 1))


def errors(diagnostics) -> list:
    """The errors among published diagnostics: the examples may carry
    warnings (the welcome series texts without quiet hours), which these
    tests are not about."""
    return [d for d in diagnostics if d.severity == types.DiagnosticSeverity.Error]


def flowc_check(path: pathlib.Path) -> list[dict]:
    out = subprocess.run([FLOWC, "check", "--format", "json", str(path)], capture_output=True, text=True)
    assert out.returncode == 1, out.stderr
    return json.loads(out.stdout)["diagnostics"]


@pytest.mark.asyncio
async def test_diagnostics_match_flowc_check(client: LanguageClient, workspace):
    path = workspace / "welcome.flow"
    await open_document(client, path)
    published = errors(client.diagnostics[uri_of(path)])
    expected = [d for d in flowc_check(path) if d["severity"] == "error"]
    assert len(published) == len(expected) == 1
    got, want = published[0], expected[0]
    assert got.code == want["code"] == "unknown-template"
    assert got.severity == types.DiagnosticSeverity.Error
    assert want["message"] in got.message and "did you mean `welcome_email`?" in got.message
    # check's positions are 1-based; the line is ASCII, so columns are UTF-16 units too.
    assert got.range.start == types.Position(line=want["span"]["start"]["line"] - 1, character=want["span"]["start"]["column"] - 1)
    assert got.range.end == types.Position(line=want["span"]["end"]["line"] - 1, character=want["span"]["end"]["column"] - 1)


@pytest.mark.asyncio
async def test_quick_fix_applies_did_you_mean(client: LanguageClient, workspace):
    path = workspace / "welcome.flow"
    await open_document(client, path)
    diag = errors(client.diagnostics[uri_of(path)])[0]
    actions = await client.text_document_code_action_async(
        types.CodeActionParams(
            text_document=types.TextDocumentIdentifier(uri=uri_of(path)),
            range=diag.range,
            context=types.CodeActionContext(diagnostics=[diag]),
        )
    )
    assert actions, "a quick fix is offered"
    edits = actions[0].edit.changes[uri_of(path)]
    assert [(e.range, e.new_text) for e in edits] == [(diag.range, "welcome_email")]


@pytest.mark.asyncio
async def test_hover_shows_segment_definition(client: LanguageClient, workspace):
    path = workspace / "welcome.flow"
    text = await open_document(client, path)
    hover = await client.text_document_hover_async(
        types.HoverParams(text_document=types.TextDocumentIdentifier(uri=uri_of(path)), position=position_of(text, "audience new_signups", 12))
    )
    assert hover is not None
    value = hover.contents.value if hasattr(hover.contents, "value") else str(hover.contents)
    assert "segment" in value and 'tags has "onboarding"' in value, value


@pytest.mark.asyncio
async def test_completion_offers_published_templates_of_the_channel(client: LanguageClient, workspace):
    path = workspace / "welcome.flow"
    text = await open_document(client, path)
    # Right after `send email.marketing `: only PUBLISHED email.marketing templates, as the builder offers.
    result = await client.text_document_completion_async(
        types.CompletionParams(
            text_document=types.TextDocumentIdentifier(uri=uri_of(path)),
            position=position_of(text, "hello: send email.marketing ", len("hello: send email.marketing ")),
        )
    )
    items = result.items if isinstance(result, types.CompletionList) else result
    labels = sorted(i.label for i in items)
    assert labels == ["offer_a", "offer_b", "welcome_email"], labels
    assert all(i.kind is not None for i in items)


@pytest.mark.asyncio
async def test_definition_crosses_into_imported_file(client: LanguageClient, workspace):
    path = workspace / "welcome.flow"
    text = await open_document(client, path)
    result = await client.text_document_definition_async(
        types.DefinitionParams(text_document=types.TextDocumentIdentifier(uri=uri_of(path)), position=position_of(text, "audience new_signups", 12))
    )
    loc = result[0] if isinstance(result, list) else result
    target = loc.target_uri if isinstance(loc, types.LocationLink) else loc.uri
    assert target == uri_of(workspace / "shared.flow")
    shared = (workspace / "shared.flow").read_text(encoding="utf-8")
    start = loc.target_selection_range.start if isinstance(loc, types.LocationLink) else loc.range.start
    assert start.line == position_of(shared, "segment new_signups").line


@pytest.mark.asyncio
async def test_formatting_an_untidy_buffer(client: LanguageClient, workspace):
    path = workspace / "shared.flow"
    untidy = "segment   vip=plan==pro\n"
    client.text_document_did_open(
        types.DidOpenTextDocumentParams(text_document=types.TextDocumentItem(uri=uri_of(path), language_id="flow", version=1, text=untidy))
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    edits = await client.text_document_formatting_async(
        types.DocumentFormattingParams(
            text_document=types.TextDocumentIdentifier(uri=uri_of(path)),
            options=types.FormattingOptions(tab_size=2, insert_spaces=True),
        )
    )
    assert edits and edits[0].new_text == "segment vip = plan == pro\n"


@pytest.mark.asyncio
async def test_fixing_the_typo_clears_diagnostics(client: LanguageClient, workspace):
    path = workspace / "welcome.flow"
    text = await open_document(client, path)
    assert errors(client.diagnostics[uri_of(path)])
    client.text_document_did_change(
        types.DidChangeTextDocumentParams(
            text_document=types.VersionedTextDocumentIdentifier(uri=uri_of(path), version=2),
            content_changes=[types.TextDocumentContentChangeWholeDocument(text=text.replace(TYPO[1], TYPO[0]))],
        )
    )
    await client.wait_for_notification(types.TEXT_DOCUMENT_PUBLISH_DIAGNOSTICS)
    assert errors(client.diagnostics[uri_of(path)]) == []


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-q"]))


@pytest.fixture()
def reach_workspace(tmp_path):
    """The examples, untouched, with a database named in flowc.toml and
    filled by `flowc contacts import` from the examples' contacts."""
    for f in (ROOT / "examples").glob("*"):
        if f.is_file():
            shutil.copy(f, tmp_path / f.name)
    (tmp_path / "flowc.toml").write_text('database = "reach.db"\n', encoding="utf-8")
    out = subprocess.run(
        [FLOWC, "contacts", "import", "contacts.jsonl", "--db", "reach.db", "--schema", "shared.flow"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    return tmp_path


@pytest.mark.asyncio
async def test_code_lens_shows_reach_and_cost_and_opens_the_estimate(client: LanguageClient, reach_workspace):
    """Issue 22: above the campaign, the audience and cost `flowc estimate`
    computes over the workspace's database; the lens's command returns the
    per-step estimate."""
    path = reach_workspace / "welcome.flow"
    out = subprocess.run(
        [FLOWC, "estimate", "welcome.flow", "--db", "reach.db", "--format", "json"],
        cwd=reach_workspace,
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0, out.stderr
    estimate = json.loads(out.stdout)
    # What an editor does when the server asks it to refresh its lenses
    # (pytest-lsp answers `window/showDocument` itself).
    @client.feature(types.WORKSPACE_CODE_LENS_REFRESH)
    def on_refresh(params):
        return None

    await open_document(client, path)
    params = types.CodeLensParams(text_document=types.TextDocumentIdentifier(uri=uri_of(path)))
    lenses = []
    for _ in range(300):
        lenses = await client.text_document_code_lens_async(params) or []
        if lenses:
            break
        await asyncio.sleep(0.05)
    assert len(lenses) == 1, lenses
    audience = f"{estimate['audience']:,}"
    assert lenses[0].command.title == f"≈ {audience} contacts · €{estimate['cost']['expected']:,.2f}"
    assert lenses[0].command.command == "flowc.showEstimate"
    result = await client.workspace_execute_command_async(
        types.ExecuteCommandParams(command=lenses[0].command.command, arguments=lenses[0].command.arguments)
    )
    text = result["text"] if isinstance(result, dict) else getattr(result, "text", "")
    assert f"campaign welcome: audience {estimate['audience']} contact(s)" in text, result
