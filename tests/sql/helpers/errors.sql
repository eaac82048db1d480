-- Helper for the files that check an error's parts, included with `\ir helpers/errors.sql`.
--
-- error_of(sql): the SQLSTATE, message, DETAIL and HINT a statement fails with (null if
-- it does not)
create function pg_temp.error_of(p_sql text)
returns jsonb
language plpgsql
as $$
declare
    v_state text;
    v_message text;
    v_detail text;
    v_hint text;
begin
    execute p_sql;
    return null;
exception when others then
    get stacked diagnostics v_state = returned_sqlstate, v_message = message_text,
                            v_detail = pg_exception_detail, v_hint = pg_exception_hint;
    return jsonb_build_object('sqlstate', v_state, 'message', v_message, 'detail', v_detail, 'hint', v_hint);
end;
$$;
