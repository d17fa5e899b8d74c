-- .flow files are campaigns for flowc.
if vim.fn.has("nvim-0.8") == 1 then
  vim.filetype.add({ extension = { flow = "flow" } })
else
  -- 0.7 only consults vim.filetype.add when filetype.lua is switched on.
  vim.api.nvim_create_autocmd({ "BufRead", "BufNewFile" }, {
    pattern = "*.flow",
    command = "setfiletype flow",
  })
end
