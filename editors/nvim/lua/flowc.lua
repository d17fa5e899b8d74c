-- Starts `flowc lsp` for .flow buffers. In your config:
--   require("flowc").setup({ cmd = { "flowc", "lsp" } })
-- Works on Neovim 0.7 and later (0.8+ uses vim.lsp.start, which reuses one
-- client per root; on 0.7 the same is done by hand).
local M = {}

local clients = {} -- root directory -> client id (0.7 path only)

local function root_of(buf)
  local name = vim.api.nvim_buf_get_name(buf)
  return vim.fn.fnamemodify(name, ":p:h")
end

local function attach(buf, opts)
  local config = {
    name = "flowc",
    cmd = opts.cmd,
    root_dir = root_of(buf),
    on_attach = opts.on_attach,
    capabilities = opts.capabilities,
  }
  if vim.lsp.start then
    vim.lsp.start(config, { bufnr = buf })
    return
  end
  local id = clients[config.root_dir]
  if id == nil or vim.lsp.get_client_by_id(id) == nil then
    id = vim.lsp.start_client(config)
    clients[config.root_dir] = id
  end
  if id then
    vim.lsp.buf_attach_client(buf, id)
  end
end

function M.setup(opts)
  opts = opts or {}
  opts.cmd = opts.cmd or { "flowc", "lsp" }
  vim.api.nvim_create_autocmd("FileType", {
    pattern = "flow",
    callback = function(args)
      vim.bo[args.buf].commentstring = "// %s"
      vim.bo[args.buf].omnifunc = "v:lua.vim.lsp.omnifunc"
      attach(args.buf, opts)
    end,
  })
end

return M
