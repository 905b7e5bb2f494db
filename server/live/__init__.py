"""Race sessions on the gateway: laps arrive car by car from the timing feed, the gateway keeps the
field's history (server.live.store), builds each car's request with the Data Engine
(server.live.field) and predicts through the same pipeline as /predict (server.live.service).
Routes and the race view: server.live.routes, server/live/static/."""
