"""The tweetlm console (layer L5): static HTML, CSS and JavaScript pages served by ``tweetlm serve`` at ``/``
(``serve.console``). The pages call only the public HTTP API."""
