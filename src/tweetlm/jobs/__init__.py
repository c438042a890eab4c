"""Jobs layer (L4): named recipes and the end-to-end ``run`` job that calls every stage in order. It may import
every library layer below it (including training) and holds no model, data or serving logic of its own."""
