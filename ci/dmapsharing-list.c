/* Lists a DAAP library through libdmapsharing's DAAP client (the library Rhythmbox uses), as a
 * real third-party peer of airtwin's iTunes: no mDNS, the address is given directly.
 * libdmapsharing logs in without a pairing GUID (a guest, as iTunes' library sharing allows),
 * then reads /update, /databases, /databases/1/items, the containers and their items
 * (docs/peers.md, "libdmapsharing").
 *
 * Usage: dmapsharing-list HOST PORT [TIMEOUT_SECONDS]
 * Prints "connected: yes|no", then one line per track ("item ID: TITLE | ARTIST | ALBUM | FORMAT
 * | SECONDS"), then "items: N". Exit 0 when connected, 1 when not, 2 on bad usage, 124 on
 * timeout. Built by ci/install-peers against libdmapsharing-3.0 (Debian bookworm 2.9.41).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libdmapsharing/dmap.h>

/* libdmapsharing's own test record factory, exported by the shared library. */
extern DMAPRecordFactory *test_daap_record_factory_new (void);

/* A DMAPDb that keeps records in a hash table by id. */
typedef struct {
	GObject parent;
	GHashTable *records;
	guint next_id;
} ListDb;

typedef struct {
	GObjectClass parent;
} ListDbClass;

static void list_db_iface_init (gpointer iface, gpointer data);

G_DEFINE_TYPE_WITH_CODE (ListDb, list_db, G_TYPE_OBJECT,
			 G_IMPLEMENT_INTERFACE (DMAP_TYPE_DB, list_db_iface_init))

static guint
list_db_add_with_id (DMAPDb *db, DMAPRecord *record, guint id)
{
	ListDb *self = (ListDb *) db;
	g_hash_table_insert (self->records, GUINT_TO_POINTER (id), g_object_ref (record));
	return id;
}

static guint
list_db_add (DMAPDb *db, DMAPRecord *record)
{
	ListDb *self = (ListDb *) db;
	return list_db_add_with_id (db, record, self->next_id++);
}

static guint
list_db_add_path (G_GNUC_UNUSED DMAPDb *db, G_GNUC_UNUSED const gchar *path)
{
	return 0;
}

static DMAPRecord *
list_db_lookup_by_id (const DMAPDb *db, guint id)
{
	DMAPRecord *r = g_hash_table_lookup (((ListDb *) db)->records, GUINT_TO_POINTER (id));
	return r ? g_object_ref (r) : NULL;
}

static guint
list_db_lookup_id_by_location (G_GNUC_UNUSED const DMAPDb *db, G_GNUC_UNUSED const gchar *location)
{
	return 0;
}

static void
list_db_foreach (const DMAPDb *db, GHFunc func, gpointer data)
{
	g_hash_table_foreach (((ListDb *) db)->records, func, data);
}

static gint64
list_db_count (const DMAPDb *db)
{
	return g_hash_table_size (((ListDb *) db)->records);
}

static void
list_db_iface_init (gpointer iface, G_GNUC_UNUSED gpointer data)
{
	DMAPDbIface *db = iface;
	db->add = list_db_add;
	db->add_with_id = list_db_add_with_id;
	db->add_path = list_db_add_path;
	db->lookup_by_id = list_db_lookup_by_id;
	db->lookup_id_by_location = list_db_lookup_id_by_location;
	db->foreach = list_db_foreach;
	db->count = list_db_count;
}

static void
list_db_init (ListDb *self)
{
	self->records = g_hash_table_new_full (g_direct_hash, g_direct_equal, NULL, g_object_unref);
	self->next_id = 1;
}

static void
list_db_class_init (G_GNUC_UNUSED ListDbClass *klass)
{
}

static GMainLoop *loop;
static int status = 1;

static gint
by_id (gconstpointer a, gconstpointer b)
{
	return GPOINTER_TO_INT (a) - GPOINTER_TO_INT (b);
}

static void
collect (gpointer key, G_GNUC_UNUSED gpointer value, gpointer data)
{
	GList **ids = data;
	*ids = g_list_insert_sorted (*ids, key, by_id);
}

static gboolean
connected (G_GNUC_UNUSED DMAPConnection *conn, gboolean ok, const char *reason, gpointer data)
{
	ListDb *db = data;
	GList *ids = NULL, *l;

	printf ("connected: %s%s%s\n", ok ? "yes" : "no", reason ? " " : "", reason ? reason : "");
	g_hash_table_foreach (db->records, collect, &ids);
	for (l = ids; l; l = l->next) {
		DMAPRecord *r = g_hash_table_lookup (db->records, l->data);
		gchar *title = NULL, *artist = NULL, *album = NULL, *format = NULL;
		gint duration = 0;
		g_object_get (r, "title", &title, "songartist", &artist, "songalbum", &album,
			      "format", &format, "duration", &duration, NULL);
		printf ("item %d: %s | %s | %s | %s | %d\n", GPOINTER_TO_INT (l->data),
			title ? title : "", artist ? artist : "", album ? album : "",
			format ? format : "", duration);
		g_free (title);
		g_free (artist);
		g_free (album);
		g_free (format);
	}
	printf ("items: %u\n", g_list_length (ids));
	g_list_free (ids);
	fflush (stdout);
	status = ok ? 0 : 1;
	g_main_loop_quit (loop);
	return FALSE;
}

static gboolean
timed_out (G_GNUC_UNUSED gpointer data)
{
	printf ("timeout\n");
	fflush (stdout);
	status = 124;
	g_main_loop_quit (loop);
	return FALSE;
}

int
main (int argc, char **argv)
{
	if (argc < 3) {
		fprintf (stderr, "usage: %s HOST PORT [TIMEOUT_SECONDS]\n", argv[0]);
		return 2;
	}
	int port = atoi (argv[2]);
	guint timeout = argc > 3 ? (guint) atoi (argv[3]) : 20;
	if (port <= 0 || port > 65535 || timeout == 0) {
		fprintf (stderr, "%s: bad port or timeout\n", argv[0]);
		return 2;
	}
	loop = g_main_loop_new (NULL, FALSE);
	ListDb *db = g_object_new (list_db_get_type (), NULL);
	DMAPRecordFactory *factory = test_daap_record_factory_new ();
	DAAPConnection *conn =
		daap_connection_new ("airtwin", argv[1], port, DMAP_DB (db), factory);
	dmap_connection_connect (DMAP_CONNECTION (conn), connected, db);
	g_timeout_add_seconds (timeout, timed_out, NULL);
	g_main_loop_run (loop);
	return status;
}
