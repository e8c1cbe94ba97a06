"""`tcfuzz report`: the evidence of every other command gathered into one versioned document
(report.json) and rendered for a code-review site (report.md) and a browser (report.html)."""
