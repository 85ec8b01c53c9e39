"""Reports made from the store: terminal tables, Markdown, HTML and the leaderboard."""
