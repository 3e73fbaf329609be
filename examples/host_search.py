"""A host product adds sketch + text search to its own Qdrant collection "products".

    python examples/host_search.py CATALOG_DIR SKETCH_PNG [QDRANT_URL_OR_FOLDER]

The collection already holds the host's points (their ids are catalog.csv's `host_id` column), vectors and payload.
sketchtext adds one named vector, "sketch", and its own payload under `sketchtext`, and leaves the rest alone.
"""

import sys
from pathlib import Path

from qdrant_client import QdrantClient, models

from sketchtext.plugin import SketchTextPlugin, SketchTextQuery, load_settings
from sketchtext.plugin.miniature.demo import bundle_dir

catalog_dir = sys.argv[1]  # a folder may be a str or a Path
sketch_png = Path(sys.argv[2])  # a sketch file must be a Path (a str sketch is a data URL or base64 only)
qdrant = sys.argv[3] if len(sys.argv) > 3 else "http://localhost:6333"
host_client = QdrantClient(url=qdrant) if qdrant.startswith("http") else QdrantClient(path=qdrant)

# The model, chosen in code: the bundled demo model works offline. The default model
# (open_clip:ViT-B-32@laion2b_s34b_b79k) downloads its weights on first use.
demo = bundle_dir()
settings = load_settings(
    model={"spec": f"open_clip:sketchtext-mini@{demo / 'mini-clip.safetensors'}", "checkpoint": demo / "method"},
    store={"point_ids": "host"},  # point id = the host_id column of catalog.csv
)
plugin = SketchTextPlugin(settings, client=host_client, collection="products", vector_name="sketch")
plugin.add_to_collection(catalog_dir)  # adds the "sketch" vector once, then embeds new or changed photos

in_stock = models.Filter(must=[models.FieldCondition(key="in_stock", match=models.MatchValue(value=True))])
query = SketchTextQuery(sketch=sketch_png, text="in red", category="shoes", filters=in_stock, limit=5)

# Either encode and run it with the host's own client ...
q = plugin.encode(query)  # q.request(): query, using, query_filter, limit (with regions=True: prefetch + rerank)
points = host_client.query_points("products", **q.request()).points
print("host query:", [point.id for point in points])

# ... or let the plugin run it: typed hits, best first, with payload and SQL metadata.
for hit in plugin.search(query):
    print(hit.id, round(hit.score, 3), hit.asset["sku"])
plugin.close()
