// Starts `flowc lsp` for .flow files; everything else comes from the server.
const vscode = require("vscode");
const { LanguageClient } = require("vscode-languageclient/node");

let client;

function activate(context) {
  const command = vscode.workspace.getConfiguration("flowc").get("path", "flowc");
  const server = { command, args: ["lsp"] };
  client = new LanguageClient(
    "flowc",
    "flowc",
    { run: server, debug: server },
    { documentSelector: [{ scheme: "file", language: "flow" }] }
  );
  context.subscriptions.push({ dispose: () => client && client.stop() });
  return client.start();
}

function deactivate() {
  return client ? client.stop() : undefined;
}

module.exports = { activate, deactivate };
