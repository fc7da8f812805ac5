-- register: registering handlers, and every refusal
CREATE FUNCTION public.note(e jsonb) RETURNS void LANGUAGE sql
AS $$ INSERT INTO public.effects (handler, event, who, session_who, path)
      VALUES ('note', e, current_user, session_user, current_setting('search_path')) $$;

SELECT async.register('public.note(jsonb)');
SELECT name, handler, run_as, max_attempts, retry_delays, timeout, registered_by
  FROM async.functions WHERE name = 'note';

-- a name of one's own, and registering it again updates it
SELECT async.register('public.note(jsonb)', name => 'note2', max_attempts => 5,
                      retry_delays => '{1 second}', timeout => '10 seconds');
SELECT async.register('public.note(jsonb)', name => 'note2', max_attempts => 2);
SELECT name, max_attempts, retry_delays, timeout FROM async.functions WHERE name = 'note2';
SELECT async.unregister('note2');
SELECT async.unregister('note2');

-- refusals change nothing
SELECT async.register('public.missing(jsonb)');
SELECT async.register('public.note(jsonb)', max_attempts => 0);
SELECT async.register('public.note(jsonb)', retry_delays => '{1 minute,-1 second}');
SELECT async.register('public.note(jsonb)', retry_delays => '{1 minute,NULL}');
SELECT async.register('public.note(jsonb)', timeout => '0');
SELECT async.register('public.note(jsonb)', timeout => '-5 seconds');
SELECT async.register('public.note(jsonb)', name => '');
SELECT async.register(NULL);
SELECT async.register('public.note(jsonb)', max_attempts => NULL);

CREATE FUNCTION public.two_args(e jsonb, n int) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.two_args(jsonb,int)');
CREATE FUNCTION public.text_arg(e text) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.text_arg(text)');
CREATE FUNCTION public.many(e jsonb) RETURNS SETOF int LANGUAGE sql AS $$ SELECT 1 $$;
SELECT async.register('public.many(jsonb)');
CREATE PROCEDURE public.proc(e jsonb) LANGUAGE sql AS $$ SELECT $$;
SELECT async.register('public.proc(jsonb)'::regprocedure);

SELECT name FROM async.functions ORDER BY name;

-- the stored signature is schema-qualified: a search_path cannot redirect it
CREATE SCHEMA other;
CREATE FUNCTION other.note(e jsonb) RETURNS void LANGUAGE sql AS $$ SELECT $$;
SET search_path = other, public;
SELECT async.register('other.note(jsonb)', name => 'other_note');
RESET search_path;
SELECT handler FROM async.functions WHERE name = 'other_note';
SELECT async.unregister('other_note');
DROP SCHEMA other CASCADE;
DROP FUNCTION public.two_args(jsonb, int), public.text_arg(text), public.many(jsonb);
DROP PROCEDURE public.proc(jsonb);
