"""Check a card key's (batch, product, merchant) reference once per INSERT statement instead of
once per row (issue 7: an import of 100,000 keys spent 0.5–1.0 s of its commit in the foreign
key's 100,000 per-row look-ups; one set-based check of the statement's rows costs ~0.15 s).

PostgreSQL only (the demo's SQLite keeps the ORM's on_delete protection). The composite foreign
key of migration 0005 is replaced by triggers that enforce the same rule:

- after each INSERT statement on the stock table: the referenced batches are locked as a foreign
  key locks them (FOR KEY SHARE, so none can be deleted or re-pointed until commit), then any
  inserted row whose (batch, product, merchant) is not an import batch's (id, product, merchant)
  raises foreign_key_violation;
- after an UPDATE of a key's batch, product or merchant: the same check for that row;
- before a DELETE of an import batch, or an UPDATE of its id, product or merchant: refused with
  foreign_key_violation while any key refers to it. A batch delete waits for an import holding
  its lock, and then sees that import's keys; an import waits for a batch delete in progress,
  and then finds the batch gone.
The batch's own (product, merchant) → product (id, merchant) stays a foreign key (one row per
import). Unlike a foreign key's, these checks see their statement's snapshot: they hold under READ
COMMITTED, Cardvault's isolation level; TRUNCATE of the batch table alone is not refused.
"""

from django.db import migrations

CHECK_KEYS = """
CREATE FUNCTION cardkey_check_batch_reference() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        PERFORM 1 FROM shop_importbatch b
            WHERE b.id IN (SELECT DISTINCT k.batch_id FROM inserted_keys k)
            ORDER BY b.id FOR KEY SHARE OF b;
        IF EXISTS (
            SELECT 1 FROM inserted_keys k
            WHERE NOT EXISTS (
                SELECT 1 FROM shop_importbatch b
                WHERE b.id = k.batch_id AND b.product_id = k.product_id
                    AND b.merchant_id = k.merchant_id
            )
        ) THEN
            RAISE EXCEPTION 'card key refers to no import batch of its product and merchant'
                USING ERRCODE = 'foreign_key_violation',
                      CONSTRAINT = 'cardkey_batch_product_merchant_ref';
        END IF;
    ELSE
        PERFORM 1 FROM shop_importbatch b
            WHERE b.id = NEW.batch_id AND b.product_id = NEW.product_id
                AND b.merchant_id = NEW.merchant_id
            FOR KEY SHARE OF b;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'card key % refers to no import batch of its product and merchant',
                NEW.id
                USING ERRCODE = 'foreign_key_violation',
                      CONSTRAINT = 'cardkey_batch_product_merchant_ref';
        END IF;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER cardkey_batch_reference_insert
    AFTER INSERT ON shop_cardkey REFERENCING NEW TABLE AS inserted_keys
    FOR EACH STATEMENT EXECUTE FUNCTION cardkey_check_batch_reference();
CREATE TRIGGER cardkey_batch_reference_update
    AFTER UPDATE OF batch_id, product_id, merchant_id ON shop_cardkey
    FOR EACH ROW
    WHEN ((NEW.batch_id, NEW.product_id, NEW.merchant_id)
          IS DISTINCT FROM (OLD.batch_id, OLD.product_id, OLD.merchant_id))
    EXECUTE FUNCTION cardkey_check_batch_reference();

CREATE FUNCTION importbatch_protect_keys() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM shop_cardkey k WHERE k.batch_id = OLD.id) THEN
        RAISE EXCEPTION 'import batch % still has card keys', OLD.id
            USING ERRCODE = 'foreign_key_violation',
                  CONSTRAINT = 'cardkey_batch_product_merchant_ref';
    END IF;
    IF TG_OP = 'DELETE' THEN
        RETURN OLD;
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER importbatch_protect_keys_delete
    BEFORE DELETE ON shop_importbatch
    FOR EACH ROW EXECUTE FUNCTION importbatch_protect_keys();
CREATE TRIGGER importbatch_protect_keys_update
    BEFORE UPDATE OF id, product_id, merchant_id ON shop_importbatch
    FOR EACH ROW
    WHEN ((NEW.id, NEW.product_id, NEW.merchant_id)
          IS DISTINCT FROM (OLD.id, OLD.product_id, OLD.merchant_id))
    EXECUTE FUNCTION importbatch_protect_keys();

ALTER TABLE shop_cardkey DROP CONSTRAINT cardkey_batch_product_merchant_fk;
"""

FOREIGN_KEY_AGAIN = """
DROP TRIGGER importbatch_protect_keys_update ON shop_importbatch;
DROP TRIGGER importbatch_protect_keys_delete ON shop_importbatch;
DROP FUNCTION importbatch_protect_keys();
DROP TRIGGER cardkey_batch_reference_update ON shop_cardkey;
DROP TRIGGER cardkey_batch_reference_insert ON shop_cardkey;
DROP FUNCTION cardkey_check_batch_reference();
ALTER TABLE shop_cardkey ADD CONSTRAINT cardkey_batch_product_merchant_fk
    FOREIGN KEY (batch_id, product_id, merchant_id)
    REFERENCES shop_importbatch (id, product_id, merchant_id) DEFERRABLE INITIALLY DEFERRED;
"""


def _run(sql):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(sql, params=None)  # no placeholders: the %s are RAISE formats

    return apply


class Migration(migrations.Migration):
    dependencies = [("shop", "0005_cardkey_one_reference")]

    operations = [migrations.RunPython(_run(CHECK_KEYS), _run(FOREIGN_KEY_AGAIN))]
