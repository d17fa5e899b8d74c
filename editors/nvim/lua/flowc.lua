-- Starts `flowc lsp` for .flow buffers. In your config:
--   require("flowc").setup({ cmd = { "flowc", "lsp" } })
local M = {}

function M.setup(opts)
  opts = opts or {}
  local cmd = opts.cmd or { "flowc", "lsp" }
  vim.api.nvim_create_autocmd("FileType", {
    pattern = "flow",
    callback = function(args)
      vim.bo[args.buf].commentstring = "// %s"
      vim.lsp.start({
        name = "flowc",
        cmd = cmd,
        root_dir = vim.fs.dirname(vim.api.nvim_buf_get_name(args.buf)),
      }, { bufnr = args.buf })
    end,
  })
end

return M
