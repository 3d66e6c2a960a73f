"""The plugin's reports: the session JSON document, baselines, the terminal table and the HTML page.

Every function here works on the JSON form of reports (``Report.to_dict()``), so the same code
serves a single process and an xdist controller; nothing here imports torch.
"""
