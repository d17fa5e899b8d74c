-- A headless Neovim session with the editors/nvim package, as a user has it:
-- opens the welcome example with a typo and checks what the built-in LSP
-- client receives from `flowc lsp`. Driven by tests/editors.rs as
--   FLOWC_ROOT=<repo> FLOWC_BIN=<flowc> FLOWC_EXAMPLE=<copy of welcome.flow with a typo> \
--   nvim --headless --clean -u NONE -c "luafile tests/editors/nvim_session.lua"
-- Prints one line per check and `NVIM-OK` at the end; any failure exits 1.
local root = vim.env.FLOWC_ROOT
vim.opt.runtimepath:prepend(root .. "/editors/nvim")
vim.cmd("runtime! ftdetect/flow.lua")
require("flowc").setup({ cmd = { vim.env.FLOWC_BIN, "lsp" } })

local function fail(msg)
  io.stderr:write("NVIM-FAIL: " .. msg .. "\n")
  vim.cmd("cquit 1")
end

local function check(cond, msg)
  if not cond then
    fail(msg)
  end
  io.stdout:write("ok: " .. msg .. "\n")
end

local ok, err = pcall(function()
  vim.cmd("edit " .. vim.fn.fnameescape(vim.env.FLOWC_EXAMPLE))
  local buf = vim.api.nvim_get_current_buf()
  check(vim.bo[buf].filetype == "flow", "filetype detected as flow")

  -- Diagnostics arrive through the client and land in vim.diagnostic.
  -- Errors only: the example may carry warnings (missing-quiet-hours), which
  -- this session is not about.
  local diags = {}
  vim.wait(20000, function()
    diags = vim.diagnostic.get(buf, { severity = vim.diagnostic.severity.ERROR })
    return #diags > 0
  end, 50)
  check(#diags == 1, "one error published, got " .. #diags)
  local d = diags[1]
  check(d.severity == vim.diagnostic.severity.ERROR, "it is an error")
  check(d.message:find("unknown template `welcome_emial`", 1, true) ~= nil, "message: " .. d.message)
  check(d.message:find("did you mean `welcome_email`?", 1, true) ~= nil, "did-you-mean in the message")
  local code = d.code or (d.user_data and d.user_data.lsp and d.user_data.lsp.code)
  check(code == "unknown-template", "code unknown-template, got " .. tostring(code))

  local lines = vim.api.nvim_buf_get_lines(buf, 0, -1, false)
  local function pos_of(needle, offset)
    for i, l in ipairs(lines) do
      local s = l:find(needle, 1, true)
      if s then
        return { line = i - 1, character = s - 1 + (offset or 0) }
      end
    end
    fail("not in buffer: " .. needle)
  end
  check(d.lnum == pos_of("welcome_emial").line and d.col == pos_of("welcome_emial").character, "diagnostic sits on the typo")

  local uri = vim.uri_from_bufnr(buf)
  local function request(method, params)
    local replies = vim.lsp.buf_request_sync(buf, method, params, 20000)
    check(replies ~= nil, method .. " answered")
    for _, r in pairs(replies) do
      check(r.err == nil, method .. " without error")
      return r.result
    end
  end

  -- Hover on the audience segment shows its definition from shared.flow.
  local hover = request("textDocument/hover", { textDocument = { uri = uri }, position = pos_of("audience new_signups", 12) })
  local text = type(hover.contents) == "table" and (hover.contents.value or vim.inspect(hover.contents)) or tostring(hover.contents)
  check(text:find('tags has "onboarding"', 1, true) ~= nil, "hover shows the segment: " .. text)

  -- Completion after `send email.marketing ` lists published email.marketing templates only.
  local at = pos_of("hello: send email.marketing ", #"hello: send email.marketing ")
  local comp = request("textDocument/completion", { textDocument = { uri = uri }, position = at })
  local items = comp.items or comp
  local labels = {}
  for _, it in ipairs(items) do
    table.insert(labels, it.label)
  end
  table.sort(labels)
  check(table.concat(labels, ",") == "offer_a,offer_b,welcome_email", "completion: " .. table.concat(labels, ","))

  -- Go to definition of the segment lands in shared.flow.
  local def = request("textDocument/definition", { textDocument = { uri = uri }, position = pos_of("audience new_signups", 12) })
  local loc = def[1] or def
  check((loc.uri or loc.targetUri):match("shared%.flow$") ~= nil, "definition in shared.flow")

  -- Fix the typo in the buffer: the diagnostic goes away.
  local l = pos_of("welcome_emial")
  vim.api.nvim_buf_set_text(buf, l.line, l.character, l.line, l.character + #"welcome_emial", { "welcome_email" })
  vim.wait(20000, function()
    return #vim.diagnostic.get(buf, { severity = vim.diagnostic.severity.ERROR }) == 0
  end, 50)
  check(#vim.diagnostic.get(buf, { severity = vim.diagnostic.severity.ERROR }) == 0, "errors cleared after the edit")

  -- With `database` in flowc.toml, a code lens above the campaign shows the
  -- reach and cost `flowc estimate` computes (FLOWC_EXPECT_LENS).
  local want = vim.env.FLOWC_EXPECT_LENS
  local title = nil
  vim.wait(30000, function()
    vim.lsp.codelens.refresh()
    for _, l in ipairs(vim.lsp.codelens.get(buf) or {}) do
      if l.command and l.command.title then
        title = l.command.title
      end
    end
    return title == want
  end, 300)
  check(title == want, "code lens: " .. tostring(title) .. " (want " .. tostring(want) .. ")")
end)
if not ok then
  fail(tostring(err))
end
io.stdout:write("NVIM-OK\n")
vim.cmd("qall!")
