-- .flow files are campaigns for flowc.
vim.filetype.add({ extension = { flow = "flow" } })
